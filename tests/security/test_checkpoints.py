"""Checkpoints are data, never code: weights load through safetensors (or torch.load with
weights_only=True), and a pickle that runs code on load is refused before it can run."""

import ast
import pickle
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError
from safetensors.torch import save_file

from models.teacher import TOKENIZER_FILE, WEIGHTS_FILE, load_teacher
from models.tokenizer import Tokenizer

REPO = Path(__file__).resolve().parents[2]
SHIPPED = ("models", "transforms", "pipelines", "schemas", "sim", "benchmarks")


class _Payload:
    """Unpickling this creates `sentinel`: proof that the pickle ran code."""

    def __init__(self, sentinel: Path):
        self.sentinel = sentinel

    def __reduce__(self):
        return Path.touch, (self.sentinel,)


def _malicious(path: Path, sentinel: Path) -> Path:
    torch.save({"state_dict": _Payload(sentinel)}, path)
    return path


def test_a_pickle_posing_as_the_teacher_weights_is_refused_without_running(tmp_path):
    sentinel = tmp_path / "code-ran"
    weights = tmp_path / "weights"
    weights.mkdir()
    _malicious(weights / WEIGHTS_FILE, sentinel)
    Tokenizer.fit(["keep lane"]).save(weights / TOKENIZER_FILE)
    with pytest.raises(SafetensorError):
        load_teacher(f"tiny:{weights}")
    assert not sentinel.exists()


@pytest.mark.parametrize("metadata", [None, {"version": "tiny-1"}, {"config": "{not json"},
                                      {"config": '{"vocab_size": 3}'}])
def test_safetensors_without_a_valid_config_is_a_clear_error(tmp_path, metadata):
    save_file({"x": torch.zeros(2)}, tmp_path / WEIGHTS_FILE, metadata=metadata)
    Tokenizer.fit(["keep lane"]).save(tmp_path / TOKENIZER_FILE)
    with pytest.raises(ValueError, match="is not a tiny teacher checkpoint"):
        load_teacher(f"tiny:{tmp_path}")


def test_torch_load_with_weights_only_refuses_the_same_pickle(tmp_path):
    sentinel = tmp_path / "code-ran"
    with pytest.raises(pickle.UnpicklingError):
        torch.load(_malicious(tmp_path / "model.pt", sentinel), weights_only=True)
    assert not sentinel.exists()


def _unsafe_loads(tree: ast.AST) -> list[str]:
    """Calls that unpickle: pickle/dill/joblib/cloudpickle load(s), torch.load without
    weights_only=True, numpy load with allow_pickle=True."""
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        owner = node.func.value.id if isinstance(node.func.value, ast.Name) else ""
        name = node.func.attr
        true = {k.arg for k in node.keywords if isinstance(k.value, ast.Constant) and k.value.value is True}
        if owner in ("pickle", "dill", "joblib", "cloudpickle") and name in ("load", "loads"):
            found.append(f"{owner}.{name} at line {node.lineno}")
        elif owner == "torch" and name == "load" and "weights_only" not in true:
            found.append(f"torch.load without weights_only=True at line {node.lineno}")
        elif owner in ("np", "numpy") and name == "load" and "allow_pickle" in true:
            found.append(f"np.load(allow_pickle=True) at line {node.lineno}")
    return found


def test_the_scan_finds_unsafe_loads():
    source = "import pickle, torch, numpy as np\npickle.loads(b)\ntorch.load(p)\nnp.load(p, allow_pickle=True)\n" \
             "torch.load(p, weights_only=True)\n"
    assert len(_unsafe_loads(ast.parse(source))) == 3


def test_shipped_code_never_unpickles():
    problems = {str(path.relative_to(REPO)): found for folder in SHIPPED for path in (REPO / folder).rglob("*.py")
                if (found := _unsafe_loads(ast.parse(path.read_text())))}
    assert problems == {}
