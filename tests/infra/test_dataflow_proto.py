"""The label pipeline with Dataflow options (as infra/dataflow/launch.sh passes them) translates
to a runner API proto whose accelerator resource hint sits on the teacher's RunInference and
nowhere else, so only the inference step asks for GPU workers."""

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms.resources import AcceleratorHint

from pipelines.cli import build_parser
from pipelines.label import build

GPU = "type:nvidia-l4;count:1;install-nvidia-driver"
INFERENCE = "Teacher/RunInference"


def translate(*options: str):
    args, beam_args = build_parser("label").parse_known_args(
        ["label", "--logs", "gs://coclabel-logs/fleet", "--out", "gs://coclabel-labels/run", *options,
         "--runner", "DataflowRunner", "--project", "coclabel-test", "--region", "us-central1",
         "--temp_location", "gs://coclabel-temp/tmp", "--sdk_container_image", "example.com/coclabel-gpu:1",
         "--dry_run", "true"])  # dry run: option checks never reach Cloud Storage
    p = beam.Pipeline(options=PipelineOptions(beam_args))
    build(p, args, [args.logs], None)
    return p.to_runner_api()


def accelerator_of(proto) -> dict[str, bytes]:
    """unique_name -> accelerator hint of every transform that has one."""
    urn = AcceleratorHint.urn
    hinted = {}
    for transform in proto.components.transforms.values():
        if transform.environment_id:
            hints = proto.components.environments[transform.environment_id].resource_hints
            if urn in hints:
                hinted[transform.unique_name] = hints[urn]
    return hinted


@pytest.fixture(scope="module")
def proto():
    return translate("--accelerator", GPU)


def test_the_accelerator_hint_is_on_the_inference_transform(proto):
    hinted = accelerator_of(proto)
    assert hinted[INFERENCE] == GPU.encode()
    assert hinted[f"{INFERENCE}/BeamML_RunInference"] == GPU.encode()  # the step that runs the teacher


def test_no_other_transform_has_the_hint(proto):
    names = {t.unique_name for t in proto.components.transforms.values()}
    outside = {n for n in accelerator_of(proto) if n != INFERENCE and not n.startswith(f"{INFERENCE}/")}
    assert outside == set()
    # the pipeline around it is there, unhinted
    for step in ("ReadClips", "WriteClips", "Validate", "WriteLabels", "WriteQuarantine", "Teacher/GlobalWindow"):
        assert step in names and step not in accelerator_of(proto)


def test_without_accelerator_no_transform_has_the_hint():
    assert accelerator_of(translate()) == {}
