"""Batch norm over the global batch of several CPU processes (gloo), where PyTorch's ``SyncBatchNorm`` refuses
to run: the data-parallel trainer's ``distributed.sync_batchnorm`` on CPUs (``rigl_repro.training.distributed``)."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm whose training statistics are those of the global batch, for CPU ranks (gloo), where
    PyTorch's ``SyncBatchNorm`` refuses to run. The same parameters and buffers as ``BatchNorm2d``, so
    checkpoints are interchangeable. Outside training, or in a world of one, it is plain batch norm."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(input)
        momentum = 0.0
        if self.track_running_stats:
            self.num_batches_tracked += 1
            # momentum None: a cumulative average, as BatchNorm keeps it
            momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        return GlobalBatchNormFunction.apply(
            input, self.weight, self.bias, self.running_mean, self.running_var, self.eps, momentum
        )

    @classmethod
    def convert(cls, module: nn.Module) -> nn.Module:
        """``module`` with every ``BatchNorm{1,2,3}d`` replaced by this class, sharing its parameters and
        buffers (as ``SyncBatchNorm.convert_sync_batchnorm``)."""
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, cls):
            converted = cls(module.num_features, module.eps, module.momentum, module.affine,
                            module.track_running_stats)  # fmt: skip
            if module.affine:
                converted.weight, converted.bias = module.weight, module.bias
            converted.running_mean, converted.running_var = module.running_mean, module.running_var
            converted.num_batches_tracked = module.num_batches_tracked
            converted.train(module.training)
            return converted
        for name, child in module.named_children():
            setattr(module, name, cls.convert(child))
        return module


class GlobalBatchNormFunction(torch.autograd.Function):
    """Batch norm over the examples of every rank: per-channel (count, sum, centred sum of squares) gathered from
    all ranks and merged (Chan et al.'s pairwise formula, in the same order everywhere, so every rank normalises
    alike); the backward pass sums the two per-channel reductions of the input gradient over the ranks."""

    @staticmethod
    def forward(ctx, input, weight, bias, running_mean, running_var, eps, momentum):  # type: ignore[override]
        channels = input.shape[1]
        flat = input.transpose(0, 1).reshape(channels, -1).float()
        count = torch.full((channels,), float(flat.shape[1]), device=input.device)
        total = flat.sum(1)
        local_mean = total / count.clamp(min=1)
        squares = ((flat - local_mean[:, None]) ** 2).sum(1)
        gathered = [torch.empty(3, channels, device=input.device) for _ in range(dist.get_world_size())]
        dist.all_gather(gathered, torch.stack([count, total, squares]))
        counts, totals, all_squares = torch.stack(gathered).unbind(1)
        n = counts.sum(0)
        mean = totals.sum(0) / n
        rank_means = totals / counts.clamp(min=1)
        m2 = all_squares.sum(0) + (counts * (rank_means - mean) ** 2).sum(0)
        invstd = torch.rsqrt(m2 / n + eps)
        if running_mean is not None:
            running_mean.mul_(1 - momentum).add_(mean.to(running_mean.dtype), alpha=momentum)
            running_var.mul_(1 - momentum).add_((m2 / (n - 1).clamp(min=1)).to(running_var.dtype), alpha=momentum)
        shape = (1, channels) + (1,) * (input.dim() - 2)
        normalised = (input.float() - mean.view(shape)) * invstd.view(shape)
        ctx.save_for_backward(normalised, weight, invstd, n)
        output = normalised
        if weight is not None:
            output = output * weight.view(shape) + bias.view(shape)
        return output.to(input.dtype)

    @staticmethod
    def backward(ctx, grad_output):  # type: ignore[override]
        normalised, weight, invstd, n = ctx.saved_tensors
        channels = grad_output.shape[1]
        shape = (1, channels) + (1,) * (grad_output.dim() - 2)
        dims = [0] + list(range(2, grad_output.dim()))
        grad = grad_output.float()
        local_sum = grad.sum(dims)
        local_dot = (grad * normalised).sum(dims)
        reduced = torch.stack([local_sum, local_dot])
        dist.all_reduce(reduced)
        scale = invstd if weight is None else invstd * weight.float()
        mean_grad, mean_dot = (reduced / n).unbind(0)
        grad_input = scale.view(shape) * (grad - mean_grad.view(shape) - normalised * mean_dot.view(shape))
        grad_weight = grad_bias = None
        if weight is not None:  # this rank's share: DistributedDataParallel averages it with the others'
            grad_weight, grad_bias = local_dot.to(weight.dtype), local_sum.to(weight.dtype)
        return grad_input.to(grad_output.dtype), grad_weight, grad_bias, None, None, None, None
