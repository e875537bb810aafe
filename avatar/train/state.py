"""Everything a fit needs to continue where it stopped, and its save and restore through a checkpoint."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from avatar.core.backends import HashGridName
from avatar.model.gaussians import CanonicalGaussians
from avatar.model.talking_head import TalkingHead
from avatar.runs.checkpoint import load_checkpoint, save_checkpoint
from avatar.runs.run_dir import model_from_checkpoint
from avatar.runs.settings import TrainSettings
from avatar.train.densify import DensifyState


def extent(gaussians: CanonicalGaussians) -> float:
    """Radius of the Gaussians' positions around their mean, metres."""
    means = gaussians.means.detach()
    return float((means - means.mean(0)).norm(dim=-1).max())


def head_extent(model: TalkingHead) -> float:
    """Radius of the canonical head Gaussians' positions around their mean, metres."""
    return extent(model.gaussians)


def gaussian_groups(gaussians: CanonicalGaussians, settings: TrainSettings) -> list[dict]:
    """Adam parameter groups, one per Gaussian parameter; the position learning rate scales with the
    Gaussians' extent."""
    rates = {
        "means": settings.lr_means * extent(gaussians),
        "quats": settings.lr_quats,
        "log_scales": settings.lr_scales,
        "opacity_logits": settings.lr_opacities,
        "color_logits": settings.lr_colors,
    }
    params = gaussians.parameters_by_name()
    return [{"name": name, "params": [param], "lr": rates[name]} for name, param in params.items()]


def make_optimizer(model: TalkingHead, settings: TrainSettings) -> torch.optim.Adam:
    """Adam over one group per Gaussian parameter, the hash grid and the rest of the deformation network; the
    position learning rate scales with the head's extent."""
    groups = gaussian_groups(model.gaussians, settings)
    hash_params = list(model.deformation.hash_grid.parameters())
    hash_ids = {id(param) for param in hash_params}
    other = [param for param in model.deformation.parameters() if id(param) not in hash_ids]
    groups.append({"name": "hash_grid", "params": hash_params, "lr": settings.lr_hash_grid, "eps": 1e-15})
    groups.append({"name": "deformation", "params": other, "lr": settings.lr_deformation})
    return torch.optim.Adam(groups, eps=1e-15)


@dataclass
class TrainingState:
    model: TalkingHead
    optimizer: torch.optim.Adam
    densify: DensifyState
    rng: np.random.Generator  # the frame order and every other random choice of the loop
    step: int  # steps done
    elapsed: float  # training seconds before this session
    finished: bool  # the run's last step is done and saved

    @staticmethod
    def start(model: TalkingHead, settings: TrainSettings, seed: int) -> TrainingState:
        torch.manual_seed(seed)
        device = model.gaussians.means.device
        return TrainingState(
            model=model,
            optimizer=make_optimizer(model, settings),
            densify=DensifyState.zeros(model.gaussians.num, device),
            rng=np.random.default_rng(seed),
            step=0,
            elapsed=0.0,
            finished=False,
        )

    def save(self, run_dir: Path, step: int, elapsed: float, *, finished: bool) -> None:
        tensors = {f"model.{name}": value for name, value in self.model.state_dict().items()}
        for index, group in enumerate(self.optimizer.param_groups):
            for position, param in enumerate(group["params"]):
                for key, value in self.optimizer.state.get(param, {}).items():
                    tensors[f"optimizer.{index}.{position}.{key}"] = torch.as_tensor(value)
        tensors["densify.grad_norm_sum"] = self.densify.grad_norm_sum
        tensors["densify.visits"] = self.densify.visits
        tensors["rng.torch"] = torch.get_rng_state()
        meta = {
            "model": self.model.config_dict(),
            "learning_rates": [group["lr"] for group in self.optimizer.param_groups],
            "numpy_rng": self.rng.bit_generator.state,
            "elapsed_seconds": elapsed,
            "finished": finished,
        }
        save_checkpoint(run_dir, step, tensors, meta)

    @staticmethod
    def restore(
        run_dir: Path, settings: TrainSettings, device: torch.device, hash_grid: HashGridName
    ) -> TrainingState:
        checkpoint = load_checkpoint(run_dir, device)
        model = model_from_checkpoint(checkpoint, device, hash_grid)
        optimizer = make_optimizer(model, settings)
        for index, group in enumerate(optimizer.param_groups):
            group["lr"] = checkpoint.meta["learning_rates"][index]
            for position, param in enumerate(group["params"]):
                prefix = f"optimizer.{index}.{position}."
                entries = {k[len(prefix) :]: v for k, v in checkpoint.tensors.items() if k.startswith(prefix)}
                if entries:
                    optimizer.state[param] = entries
        torch.set_rng_state(checkpoint.tensors["rng.torch"].cpu())
        rng = np.random.default_rng()
        rng.bit_generator.state = checkpoint.meta["numpy_rng"]
        return TrainingState(
            model=model,
            optimizer=optimizer,
            densify=DensifyState(
                checkpoint.tensors["densify.grad_norm_sum"].to(device),
                checkpoint.tensors["densify.visits"].to(device),
            ),
            rng=rng,
            step=checkpoint.step,
            elapsed=float(checkpoint.meta["elapsed_seconds"]),
            finished=bool(checkpoint.meta.get("finished")),
        )
