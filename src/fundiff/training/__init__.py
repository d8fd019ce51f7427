"""Training of the write-up's three Part B models and of the grading classifier.

- ``denoiser``: one-step denoiser D(z) ~ x, z = x + sigma * eps, L2 loss on x.
- ``time``: eps_theta(x_t, t), Ho et al. 2020 Alg. 1, L2 loss on eps (or v, or flow matching).
- ``class``: eps_theta(x_t, t, c), c one-hot, dropped to zeros with p_uncond (Ho & Salimans 2022).

Images are in [0, 1] (the write-up's convention), shape (B, 1, 28, 28). The whole split
is one uint8 tensor in memory; batches are index slices of a per-epoch permutation drawn
from (seed, epoch), so a resumed run sees the same batches. Training noise comes from
one ``torch.Generator`` per rank whose state is checkpointed.

Under ``torchrun --nproc_per_node N`` the same code trains with DistributedDataParallel:
each rank takes every N-th index of the epoch permutation and batch_size / N images.

A run folder is locked (``run_lock``) while it trains. ``--precision auto`` takes the
faster of fp32 / bf16 autocast and of the memory formats, timed once per machine
(devices.choose_precision); the choice is recorded in config.json and kept on resume.

Modules, by job:

- ``config``: TrainConfig, PRESETS, preset_config, config_from_dict, schedule_of_config
- ``finetune``: a run that starts from a trained model's weights and recipe (``fundiff train --init-from``)
- ``options``: each config field's check, help and flag (field metadata), and ``validate``
- ``objectives``: the loss of each kind and objective (eps, v, flow, min-SNR)
- ``loop``: ``train`` and its epochs and steps; ``session``: the state it checkpoints and resumes
- ``ema``, ``distributed``: the weight EMA; DDP ranks, barriers and RNG gathering
- ``steps``, ``progress``, ``lock``: the loop pieces shared with ``classifier`` (data order,
  LR factor, loss check; the progress bar; the run-folder lock)
- ``classifier``: ClassifierTrainConfig and train_classifier (loading it back: fundiff.classify)
"""

from fundiff.training.classifier import ClassifierResult, ClassifierTrainConfig, train_classifier
from fundiff.training.config import (
    LOSS_WEIGHTS,
    LR_SCHEDULES,
    PRESETS,
    TrainConfig,
    config_from_dict,
    preset_config,
    schedule_of_config,
)
from fundiff.training.lock import run_lock
from fundiff.training.loop import TrainResult, train
from fundiff.training.objectives import MIN_SNR_GAMMA, batch_loss, diffusion_target
from fundiff.training.options import validate
from fundiff.training.progress import Progress
from fundiff.training.steps import check_loss, epoch_permutation, lr_factor, set_lr

__all__ = [
    "TrainConfig",
    "PRESETS",
    "LR_SCHEDULES",
    "LOSS_WEIGHTS",
    "MIN_SNR_GAMMA",
    "preset_config",
    "config_from_dict",
    "schedule_of_config",
    "validate",
    "train",
    "TrainResult",
    "batch_loss",
    "diffusion_target",
    "ClassifierTrainConfig",
    "ClassifierResult",
    "train_classifier",
    "epoch_permutation",
    "lr_factor",
    "set_lr",
    "check_loss",
    "Progress",
    "run_lock",
]
