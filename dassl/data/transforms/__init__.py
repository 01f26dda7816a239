from .transforms import INTERPOLATION_MODES, build_transform

__all__ = ["build_transform", "INTERPOLATION_MODES"]
