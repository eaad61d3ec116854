"""Student configurations: `nano` (CPU, tests), `small` (tens of millions of parameters, GPU) and
the documented `production` template.

A student reads the same clip inputs as the teacher and reuses its building blocks
(models/vla.py: vision encoder, ego-history tokens, prefix-LM decoder, action expert), sized
down, with a few-step action head:

- `head="flow"`: the action expert integrated in `flow_steps` (1-2) Euler steps from noise;
- `head="regression"`: the baseline, the same expert run once on `num_modes` learnt action
  queries (one trajectory per mode, trained winner-takes-all).

Unlike the teacher's, the student's action head attends to the scene only (not to the reasoning
it writes), so the trajectory path (vision + history + action head) runs, and exports to ONNX,
without the autoregressive text decoder.

Production template (`PRODUCTION`): the decoder is replaced by a pretrained 0.5B-2B causal
language model read from a local folder (`backbone_path`, Hugging Face layout, e.g. a
Qwen2.5-0.5B or 1.5B checkpoint copied there beforehand; nothing is downloaded); `d_model` must
equal the backbone's hidden size and the tokenizer is the backbone's own. The vision encoder,
history tokens and action head are those of this module at `d_model`. It is a template to
train on a GPU host with the backbone present: `build_student` refuses it with a clear message
where `backbone_path` does not exist.
"""

from dataclasses import asdict, dataclass, field, replace

HEADS = ("flow", "regression")


@dataclass(frozen=True)
class StudentConfig:
    name: str
    d_model: int
    n_heads: int
    n_decoder_layers: int
    n_expert_layers: int
    image_height: int  # decoded from the 320x576 clip JPEGs (1/8 scale: 40x72; 1/4: 80x144)
    image_width: int
    image_grid: tuple[int, int]  # tokens per image (rows, columns)
    cnn_channels: tuple[int, int] = (32, 64)  # the vision CNN's first two widths (the teacher's by default)
    head: str = "flow"
    flow_steps: int = 2
    num_modes: int = 6  # regression head: trajectories per clip
    max_text_len: int = 40
    action_chunk: int = 4
    backbone_path: str | None = None  # production template: a local pretrained language model
    notes: dict = field(default_factory=dict, compare=False)

    def __post_init__(self):
        if self.head not in HEADS:
            raise ValueError(f"unknown student head {self.head!r}; choose from {HEADS}")
        if self.head == "flow" and not 1 <= self.flow_steps <= 2:
            raise ValueError(f"a few-step flow head takes 1 or 2 steps, got {self.flow_steps}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not a multiple of n_heads {self.n_heads}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "StudentConfig":
        d = dict(d)
        d["image_grid"] = tuple(d["image_grid"])
        d["cnn_channels"] = tuple(d.get("cnn_channels", cls.cnn_channels))
        return cls(**d)


# nano: the teacher's 80x144 images through a thinner CNN, max-pooled to 2 tokens per image; one
# decoder layer (the reasoning's per-word cost on a CPU) and a 2-step flow head
NANO = StudentConfig("nano", d_model=96, n_heads=4, n_decoder_layers=1, n_expert_layers=2,
                     image_height=80, image_width=144, image_grid=(1, 2), cnn_channels=(16, 32))
SMALL = StudentConfig("small", d_model=512, n_heads=8, n_decoder_layers=6, n_expert_layers=4,
                      image_height=80, image_width=144, image_grid=(2, 4))
PRODUCTION = StudentConfig("production", d_model=896, n_heads=14, n_decoder_layers=0, n_expert_layers=6,
                           image_height=160, image_width=288, image_grid=(3, 6), max_text_len=64,
                           backbone_path="/models/qwen2.5-0.5b",
                           notes={"backbone": "0.5B-2B causal LM, local folder, Hugging Face layout",
                                  "d_model": "the backbone's hidden size (896 for 0.5B, 1536 for 1.5B)"})
CONFIGS = {c.name: c for c in (NANO, SMALL, PRODUCTION)}


def student_config(spec: str) -> StudentConfig:
    """A named configuration, with an optional head variant: "nano", "small", "nano-regression",
    "nano-flow1" (one flow step)."""
    name, _, variant = spec.partition("-")
    if name not in CONFIGS:
        raise ValueError(f"unknown student {spec!r}; choose from {sorted(CONFIGS)} (optionally -regression or -flow1)")
    cfg = CONFIGS[name]
    if variant == "regression":
        return replace(cfg, name=spec, head="regression")
    if variant == "flow1":
        return replace(cfg, name=spec, flow_steps=1)
    if variant:
        raise ValueError(f"unknown student variant {variant!r} in {spec!r}; expected regression or flow1")
    return cfg
