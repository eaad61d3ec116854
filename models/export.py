"""Export of a student to ONNX, its ONNX Runtime runners, and TensorRT engines built from the ONNX.

The trajectory path (vision encoder + history tokens + scene decoder + few-step action head)
maps (images (B, 16, 3, H, W) float32 normalised, history_xyz (B, 16, 3), history_rot (B, 16, 9),
v0 (B,), noise (B, K, 64, 2)) -> actions (B, K, 64, 2) with a dynamic batch B (K is fixed at
export); trajectories follow with models.action_space.actions_to_traj as for the torch model.

The full policy (reasoning + trajectories, `export_policy_onnx`) is two graphs run by
`OnnxPolicy`: a prefix graph (the same inputs -> actions, the logits of the first word and the
decoder's KV cache of the scene and <bos>, padded to its full length S + 1 + max_text_len) and a
step graph (one word id per clip, its position, the cache -> the next logits and the cache with
that word's keys/values written in its slot); the greedy loop between them is the runner's, as
in Student.reason. A fixed-size cache keeps both graphs' shapes static, so a step costs one small
session call instead of the dozens of eager operator calls of torch.

TensorRT (FP16, INT8 with entropy calibration) is written against TensorRT 10's Python API and
needs `tensorrt` and a CUDA device; `tensorrt_available()` says whether this host has them.
"""

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from models.students.model import Student
from models.vla import NUM_IMAGES
from schemas.contract import NUM_FUTURE, NUM_HISTORY

INPUTS = ("images", "history_xyz", "history_rot", "v0", "noise")
OUTPUT = "actions"
PREFIX_OUTPUTS = ("actions", "logits", "k", "v")


class TrajectoryPath(nn.Module):
    """The exportable part of a student: its inputs are tensors only."""

    def __init__(self, student: Student):
        super().__init__()
        self.student = student

    def forward(self, images, history_xyz, history_rot, v0, noise):
        return self.student.trajectory_path(images, history_xyz, history_rot, v0, noise)


def example_inputs(student: Student, batch: int = 2, num_samples: int = 6, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Random inputs of the trajectory path's shapes (also the INT8 calibration fallback)."""
    g = torch.Generator().manual_seed(seed)
    cfg = student.cfg
    return (torch.randn(batch, NUM_IMAGES, 3, cfg.image_height, cfg.image_width, generator=g),
            torch.cumsum(torch.rand(batch, NUM_HISTORY, 3, generator=g), 1) - 8.0,
            torch.eye(3).reshape(1, 1, 9).repeat(batch, NUM_HISTORY, 1),
            torch.rand(batch, generator=g) * 15.0,
            torch.randn(batch, num_samples, NUM_FUTURE, 2, generator=g))


def _diff_symbolic(g, x, n, dim, prepend, append):
    """ONNX for aten::diff (first order, as models/vla.history_features uses it), which the
    TorchScript exporter lacks: concat(prepend, x, append) then a shifted subtraction."""
    from torch.onnx import symbolic_helper as sh

    if sh._get_const(n, "i", "n") != 1:
        raise ValueError("only first-order diff is exported")
    axis = sh._get_const(dim, "i", "dim")
    parts = [t for t in (prepend, x, append) if not sh._is_none(t)]
    full = g.op("Concat", *parts, axis_i=axis) if len(parts) > 1 else x

    def axis_slice(start, end):
        c = lambda v: g.op("Constant", value_t=torch.tensor([v], dtype=torch.int64))  # noqa: E731
        return g.op("Slice", full, c(start), c(end), c(axis))

    return g.op("Sub", axis_slice(1, 2**62), axis_slice(0, -1))


def _adaptive_max_pool_symbolic(in_size: tuple[int, int]):
    """ONNX for aten::adaptive_max_pool2d on a feature map of static spatial size `in_size` (the
    exporter loses it under a dynamic batch): a max over each output cell's window (PyTorch's
    windows: floor(i * n / m) to ceil((i + 1) * n / m)), the cells concatenated."""
    from torch.onnx import symbolic_helper as sh

    def symbolic(g, x, output_size):
        gh, gw = sh._get_const(output_size, "is", "output_size")
        c = lambda v: g.op("Constant", value_t=torch.tensor(v, dtype=torch.int64))  # noqa: E731
        rows = []
        for i in range(gh):
            r0, r1 = (i * in_size[0]) // gh, -((-(i + 1) * in_size[0]) // gh)
            cells = []
            for j in range(gw):
                c0, c1 = (j * in_size[1]) // gw, -((-(j + 1) * in_size[1]) // gw)
                window = g.op("Slice", x, c([r0, c0]), c([r1, c1]), c([2, 3]))
                cells.append(g.op("ReduceMax", window, axes_i=[2, 3], keepdims_i=1))
            rows.append(g.op("Concat", *cells, axis_i=3))
        return g.op("Concat", *rows, axis_i=2), None

    return symbolic


def export_onnx(student: Student, path: str | Path, num_samples: int = 6, opset: int = 17, module: nn.Module | None = None,
                outputs: tuple[str, ...] = (OUTPUT,)) -> Path:
    """Write the trajectory path of `student` (eval mode, CPU, float32) to `path`, or `module`
    (a graph of the trajectory path's inputs, e.g. PolicyPrefix) with output names `outputs`,
    each with the batch first except a KV cache ("k", "v": layers first, then the batch)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    student = student.float().cpu().eval()
    module = module or TrajectoryPath(student)
    dynamic = {name: {0: "batch"} for name in INPUTS}
    dynamic.update({name: {1 if name in ("k", "v") else 0: "batch"} for name in outputs})
    cfg = student.cfg
    with torch.no_grad():
        feature = student.vision.cnn(torch.zeros(1, 3, cfg.image_height, cfg.image_width))
    torch.onnx.register_custom_op_symbolic("aten::diff", _diff_symbolic, opset)
    torch.onnx.register_custom_op_symbolic("aten::adaptive_max_pool2d", _adaptive_max_pool_symbolic(tuple(feature.shape[2:])), opset)
    with torch.no_grad():
        torch.onnx.export(module, example_inputs(student, 2, num_samples), str(path), input_names=list(INPUTS),
                          output_names=list(outputs), dynamic_axes=dynamic, opset_version=opset, dynamo=False)
    return path


class OnnxRunner:
    """ONNX Runtime session of an exported trajectory path (or of a graph of its inputs with
    other `outputs`, e.g. the full policy's prefix)."""

    def __init__(self, path: str | Path, providers: list[str] | None = None, threads: int | None = None,
                 outputs: tuple[str, ...] = (OUTPUT,)):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=providers or ["CPUExecutionProvider"])
        # a regression head ignores the noise: the exporter drops that input from the graph
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.outputs = list(outputs)

    def __call__(self, images, history_xyz, history_rot, v0, noise):
        """The output (actions), or the list of `outputs` where there are several."""
        feeds = {name: np.ascontiguousarray(np.asarray(x, dtype=np.float32))
                 for name, x in zip(INPUTS, (images, history_xyz, history_rot, v0, noise)) if name in self.inputs}
        out = self.session.run(self.outputs, feeds)
        return out[0] if len(out) == 1 else out


# ----------------------------------------------------------------------------- full policy


class PolicyPrefix(nn.Module):
    """Trajectory-path inputs -> (actions, logits of the first word, KV cache (layers, B, heads, T, d_head) x 2)."""

    def __init__(self, student: Student, bos_id: int):
        super().__init__()
        self.student, self.bos_id = student, bos_id

    def forward(self, images, history_xyz, history_rot, v0, noise):
        s = self.student
        scene = s.scene(images, history_xyz, history_rot)
        B, S = scene.shape[0], scene.shape[1]
        bos = s.embed_text(torch.full((B, 1), self.bos_id, dtype=torch.long))
        hidden, caches = s.decode(torch.cat([scene, bos], 1), s.prefix_mask(S, 1, scene.device))
        actions = s.actions(hidden[:, :S], v0, noise)
        pad = (0, 0, 0, s.cfg.max_text_len)
        k = torch.stack([F.pad(c[0], pad) for c in caches])
        v = torch.stack([F.pad(c[1], pad) for c in caches])
        return actions, s.lm_head(hidden[:, -1]), k, v


class PolicyStep(nn.Module):
    """One greedy step: word ids (B,), step index (1,), cache -> (logits, cache with the word's slot written)."""

    def __init__(self, student: Student, scene_tokens: int):
        super().__init__()
        self.student, self.scene_tokens = student, scene_tokens

    def forward(self, token, step, k, v):
        s = self.student
        T = k.shape[3]
        x = s.token(token)[:, None] + s.text_pos[step + 1][:, None]  # (B, 1, d), as embed_text(start=step + 1)
        slot = self.scene_tokens + 1 + step
        positions = torch.arange(T)
        write = (positions == slot)[:, None]  # (T, 1)
        mask = (positions <= slot)[None, None, None]  # (1, 1, 1, T)
        ks, vs = [], []
        for layer, block in enumerate(s.blocks):
            h = block.ln1(x)
            k_new, v_new = block.attn.keys_values(h)  # (B, heads, 1, d_head)
            ks.append(torch.where(write, k_new, k[layer]))
            vs.append(torch.where(write, v_new, v[layer]))
            x = x + block.attn.attend(h, ks[-1], vs[-1], mask)
            x = x + block.mlp(block.ln2(x))
        return s.lm_head(s.ln_f(x)[:, -1]), torch.stack(ks), torch.stack(vs)


def export_policy_onnx(student: Student, folder: str | Path, bos_id: int, num_samples: int = 6,
                       opset: int = 17) -> tuple[Path, Path]:
    """Write the full policy of `student` (eval mode, CPU, float32) as `folder`/prefix.onnx and
    `folder`/step.onnx; returns their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    student = student.float().cpu().eval()
    prefix_path = export_onnx(student, folder / "prefix.onnx", num_samples, opset,
                              module=PolicyPrefix(student, bos_id), outputs=PREFIX_OUTPUTS)
    inputs = example_inputs(student, 2, num_samples)
    with torch.no_grad():
        _, logits, k, v = PolicyPrefix(student, bos_id)(*inputs)
    step = PolicyStep(student, k.shape[3] - 1 - student.cfg.max_text_len)
    step_path = folder / "step.onnx"
    dynamic = {"token": {0: "batch"}, "k": {1: "batch"}, "v": {1: "batch"}, "logits": {0: "batch"},
               "k_out": {1: "batch"}, "v_out": {1: "batch"}}
    with torch.no_grad():
        torch.onnx.export(step, (logits.argmax(-1), torch.zeros(1, dtype=torch.long), k, v), str(step_path),
                          input_names=["token", "step", "k", "v"], output_names=["logits", "k_out", "v_out"],
                          dynamic_axes=dynamic, opset_version=opset, dynamo=False)
    return prefix_path, step_path


class OnnxPolicy:
    """ONNX Runtime sessions of an exported full policy: `__call__(images, history_xyz,
    history_rot, v0, noise) -> (greedy word ids (B, max_text_len), 0-padded after <eos>; actions
    (B, K, 64, 2))`, the ids those of Student.reason up to float rounding."""

    def __init__(self, prefix_path: str | Path, step_path: str | Path, eos_id: int, max_text_len: int,
                 threads: int | None = None):
        self.prefix = OnnxRunner(prefix_path, threads=threads, outputs=PREFIX_OUTPUTS)
        self.step = OnnxRunner(step_path, threads=threads).session
        self.eos_id, self.max_text_len = eos_id, max_text_len

    def __call__(self, images, history_xyz, history_rot, v0, noise) -> tuple[np.ndarray, np.ndarray]:
        actions, logits, k, v = self.prefix(images, history_xyz, history_rot, v0, noise)
        ids = np.zeros((logits.shape[0], self.max_text_len), dtype=np.int64)
        alive = np.ones(logits.shape[0], dtype=bool)
        for step in range(self.max_text_len):
            token = logits.argmax(-1)
            alive &= token != self.eos_id
            if not alive.any():
                break
            ids[:, step] = np.where(alive, token, 0)
            logits, k, v = self.step.run(None, {"token": ids[:, step], "step": np.array([step], dtype=np.int64), "k": k, "v": v})
        return ids, actions


# ----------------------------------------------------------------------------- TensorRT


def tensorrt_available() -> tuple[bool, str]:
    """(available, reason): TensorRT needs its Python package and a CUDA device."""
    try:
        import tensorrt  # noqa: F401
    except ImportError as e:
        return False, f"tensorrt does not import ({e}); it is installed from NVIDIA's package index"
    if not torch.cuda.is_available():
        return False, "tensorrt imports but there is no CUDA device"
    return True, ""


def _calibrator(batches: list[tuple[np.ndarray, ...]], cache_path: Path):
    """An INT8 entropy calibrator feeding `batches` (tuples in INPUTS order) from CUDA memory."""
    import tensorrt as trt

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            super().__init__()
            self.batches = iter(batches)
            self.held: list[torch.Tensor] = []
            self.batch_size = int(batches[0][0].shape[0])

        def get_batch_size(self):
            return self.batch_size

        def get_batch(self, names):
            batch = next(self.batches, None)
            if batch is None:
                return None
            by_name = dict(zip(INPUTS, batch))
            self.held = [torch.from_numpy(np.ascontiguousarray(by_name[n], dtype=np.float32)).cuda() for n in names]
            return [int(t.data_ptr()) for t in self.held]

        def read_calibration_cache(self):
            return cache_path.read_bytes() if cache_path.exists() else None

        def write_calibration_cache(self, cache):
            cache_path.write_bytes(bytes(cache))

    return Calibrator()


def build_engine(onnx_path: str | Path, engine_path: str | Path, precision: str = "fp16", max_batch: int = 32,
                 calibration: list[tuple[np.ndarray, ...]] | None = None, workspace_gib: float = 4.0) -> Path:
    """Build and serialise a TensorRT engine from the exported ONNX, with an optimisation profile
    for batch 1..`max_batch` (optimum at batch 1). `precision`: "fp32", "fp16" or "int8" (INT8
    needs `calibration` batches, in INPUTS order, each of the same batch size)."""
    import tensorrt as trt

    if precision not in ("fp32", "fp16", "int8"):
        raise ValueError(f"precision must be fp32, fp16 or int8, got {precision!r}")
    if precision == "int8" and not calibration:
        raise ValueError("an INT8 engine needs calibration batches")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        tail = tuple(tensor.shape)[1:]
        profile.set_shape(tensor.name, (1, *tail), (1, *tail), (max_batch, *tail))
    config.add_optimization_profile(profile)
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = _calibrator(calibration, Path(str(engine_path) + ".calib"))
        config.set_calibration_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build a {precision} engine from {onnx_path}")
    engine_path = Path(engine_path)
    engine_path.write_bytes(bytes(serialized))
    return engine_path


class TensorRTRunner:
    """Runs a serialised engine on CUDA tensors (torch owns the memory)."""

    def __init__(self, engine_path: str | Path):
        import tensorrt as trt

        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self.runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        self.context = self.engine.create_execution_context()

    def __call__(self, images, history_xyz, history_rot, v0, noise) -> np.ndarray:
        names = {self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)}
        feeds = {name: torch.as_tensor(np.asarray(x, dtype=np.float32)).cuda().contiguous()
                 for name, x in zip(INPUTS, (images, history_xyz, history_rot, v0, noise)) if name in names}
        for name, tensor in feeds.items():
            self.context.set_input_shape(name, tuple(tensor.shape))
            self.context.set_tensor_address(name, tensor.data_ptr())
        out = torch.empty(tuple(self.context.get_tensor_shape(OUTPUT)), dtype=torch.float32, device="cuda")
        self.context.set_tensor_address(OUTPUT, out.data_ptr())
        stream = torch.cuda.current_stream()
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT execution failed")
        stream.synchronize()
        return out.cpu().numpy()
