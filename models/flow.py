"""Flow matching (REFERENCE.md section 1): noise at t=0, data at t=1, straight paths between.

Training draws t ~ Beta(1.5, 1), mixes x_t = (1 - t) noise + t x and regresses the velocity
x - noise with MSE; sampling integrates the learnt velocity with Euler steps from noise.
"""

from collections.abc import Callable

import torch

BETA_A, BETA_B = 1.5, 1.0
DEFAULT_STEPS = 10


def sample_time(n: int, generator: torch.Generator | None = None, device="cpu") -> torch.Tensor:
    """(n,) times from Beta(1.5, 1), by inverse CDF (F(t) = t^1.5) so a generator can drive it."""
    u = torch.rand(n, generator=generator, device=device)
    return u ** (1.0 / BETA_A)


def training_pair(x: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_t, velocity target) for data `x`, `noise` of the same shape and times `t` (batch,)."""
    tt = t.view(-1, *([1] * (x.dim() - 1)))
    return (1 - tt) * noise + tt * x, x - noise


def flow_loss(velocity: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """MSE between `velocity(x_t, t)` and x - noise at Beta(1.5, 1) times."""
    noise = torch.randn(x.shape, generator=generator, device=x.device)
    t = sample_time(x.shape[0], generator, x.device)
    x_t, target = training_pair(x, noise, t)
    return torch.mean((velocity(x_t, t) - target) ** 2)


@torch.no_grad()
def euler_sample(velocity: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], noise: torch.Tensor,
                 steps: int = DEFAULT_STEPS) -> torch.Tensor:
    """Integrate dx/dt = velocity(x, t) from `noise` at t=0 to t=1 in `steps` Euler steps."""
    x = noise
    for i in range(steps):
        t = torch.full((x.shape[0],), i / steps, device=x.device, dtype=x.dtype)
        x = x + velocity(x, t) / steps
    return x
