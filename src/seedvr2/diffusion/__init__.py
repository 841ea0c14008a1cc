"""Diffusion maths: lerp schedule, timesteps, Euler sampler with CFG, SR condition (spec §6)."""

from .condition import model_input, sr_condition
from .sampler import VelocityFn, classifier_free_guidance, euler_sample, guided_velocity
from .schedule import (
    NUM_TIMESTEPS,
    add_noise,
    predict_clean,
    predict_noise,
    velocity_target,
)
from .timesteps import (
    logit_normal_timesteps,
    resolution_timestep_shift,
    shift_timesteps,
    uniform_trailing_timesteps,
)

__all__ = [
    "NUM_TIMESTEPS",
    "VelocityFn",
    "add_noise",
    "classifier_free_guidance",
    "euler_sample",
    "guided_velocity",
    "logit_normal_timesteps",
    "model_input",
    "predict_clean",
    "predict_noise",
    "resolution_timestep_shift",
    "shift_timesteps",
    "sr_condition",
    "uniform_trailing_timesteps",
    "velocity_target",
]
