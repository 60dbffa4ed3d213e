"""Adam (Kingma & Ba 2015), the optimiser of both stages and of the domain classifier.

Per parameter theta with gradient g, at step t (from 1), with beta1, beta2, eps:

    m <- beta1 m + (1 - beta1) g              (``exp_avg.lerp_(g, 1 - beta1)``)
    v <- beta2 v + (1 - beta2) g^2
    theta <- theta - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

written op for op as torch.optim.Adam's single-tensor path (torch/optim/adam.py,
``_single_tensor_adam``, the path it takes for CPU tensors), so the numbers are the
same bit for bit (a test steps both side by side). Why not torch.optim.Adam itself:
every torch.optim optimiser imports torch._dynamo, the compiler (0.9 s on the 2-core
CPU), on its first call, in every training process; these lines need only tensor ops.
"""

import torch


class Adam:
    """Adam without weight decay or AMSGrad; ``lr`` may be changed between steps. ``lr_factors``
    (one per parameter, default 1) scale each parameter's learning rate, as torch's parameter
    groups with lr x factor would (halving ``lr`` halves them all)."""

    def __init__(
        self,
        params,
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        lr_factors: list[float] | None = None,
    ):
        self.params = list(params)
        self.lr, self.betas, self.eps = lr, betas, eps
        self.lr_factors = lr_factors or [1.0] * len(self.params)
        self.state: list[dict | None] = [None] * len(self.params)  # created at a parameter's first gradient

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        beta1, beta2 = self.betas
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            if self.state[i] is None:
                zeros = torch.zeros_like(p, memory_format=torch.preserve_format)
                self.state[i] = {"step": 0, "exp_avg": zeros, "exp_avg_sq": zeros.clone()}
            s = self.state[i]
            s["step"] += 1
            s["exp_avg"].lerp_(p.grad, 1 - beta1)
            s["exp_avg_sq"].mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
            step_size = self.lr * self.lr_factors[i] / (1 - beta1 ** float(s["step"]))
            denom = (s["exp_avg_sq"].sqrt() / (1 - beta2 ** float(s["step"])) ** 0.5).add_(self.eps)
            p.addcdiv_(s["exp_avg"], denom, value=-step_size)

    def state_dict(self) -> dict:
        return {"lr": self.lr, "state": self.state}

    def load_state_dict(self, state: dict) -> None:
        if len(state["state"]) != len(self.params):
            raise ValueError(f"optimiser state for {len(state['state'])} parameters, the model has {len(self.params)}")
        self.lr = state["lr"]
        self.state = [
            None
            if s is None
            else {"step": s["step"], "exp_avg": s["exp_avg"].to(p.device), "exp_avg_sq": s["exp_avg_sq"].to(p.device)}
            for s, p in zip(state["state"], self.params)
        ]
