"""Airflow DAGs that label each night's logs with `coclabel label`, one DAG per engine (enable
the one you use): `coclabel_label_local`, `coclabel_label_flink`, `coclabel_label_dataflow`.

The run's logical date `{{ ds }}` picks the input folder `<logs_root>/<ds>` and the output
dataset `<out_root>/<ds>`, so a rerun or a backfill of a day rewrites that day only.
Needs apache-airflow-providers-apache-beam (and -google for Dataflow) on the Airflow workers,
and this repository (with its .venv) at $COCLABEL_HOME (default /opt/coclabel). Airflow Variables:
`coclabel_logs_root`, `coclabel_out_root`, `coclabel_teacher` (default "tiny"); for Dataflow
`coclabel_project`, `coclabel_region`, `coclabel_bucket`, `coclabel_worker_image`,
`coclabel_gpu` (default nvidia-tesla-t4). Flink: a cluster started by infra/flink/up.sh.
"""

import os

import pendulum
from airflow import DAG
from airflow.providers.apache.beam.operators.beam import BeamRunPythonPipelineOperator
from airflow.providers.google.cloud.operators.dataflow import DataflowConfiguration

HOME = os.environ.get("COCLABEL_HOME", "/opt/coclabel")
LABEL_OPTIONS = {
    "logs": "{{ var.value.coclabel_logs_root }}/{{ ds }}",
    "out": "{{ var.value.coclabel_out_root }}/{{ ds }}",
    "teacher": "{{ var.value.get('coclabel_teacher', 'tiny') }}",
    "quiet": True,
}
FLINK_CACHE = "{{ var.value.get('coclabel_flink_cache', '/root/.cache/coclabel/flink') }}"
ENGINES = {
    "local": ("FnApiRunner", {}, None),
    "flink": ("FlinkRunner", {
        "flink_master": "localhost:8081",
        "flink_version": "1.19",
        "flink_job_server_jar": f"{FLINK_CACHE}/beam-runners-flink-1.19-job-server-2.62.0.jar",
        "environment_type": "EXTERNAL",
        "environment_config": "localhost:50000",
        "parallelism": 2,
    }, None),
    "dataflow": ("DataflowRunner", {
        "temp_location": "gs://{{ var.value.coclabel_bucket }}/tmp",
        "sdk_container_image": "{{ var.value.coclabel_worker_image }}",
        "sdk_location": "container",
        "experiments": "use_runner_v2",
        "device": "cuda",
        # the GPU on the teacher step only (a Beam resource hint)
        "accelerator": "type:{{ var.value.get('coclabel_gpu', 'nvidia-tesla-t4') }};count:1;install-nvidia-driver",
    }, DataflowConfiguration(
        job_name="coclabel-label-{{ ds_nodash }}",
        project_id="{{ var.value.coclabel_project }}",
        location="{{ var.value.get('coclabel_region', 'us-central1') }}",
        wait_until_finished=True,
    )),
}

for engine, (runner, options, dataflow_config) in ENGINES.items():
    with DAG(
        dag_id=f"coclabel_label_{engine}",
        description=f"coclabel label of the day's logs on {engine}",
        schedule="0 2 * * *",  # 02:00 UTC: yesterday's logs have landed
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        max_active_runs=1,
        tags=["coclabel"],
    ) as dag:
        BeamRunPythonPipelineOperator(
            task_id="label",
            py_file=f"{HOME}/infra/label_main.py",
            py_interpreter=f"{HOME}/.venv/bin/python",
            runner=runner,
            pipeline_options={**LABEL_OPTIONS, **options},
            dataflow_config=dataflow_config,
            retries=1,
        )
    globals()[dag.dag_id] = dag
