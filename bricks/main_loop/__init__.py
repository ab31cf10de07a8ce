"""The main loop (:class:`MainLoop`) that runs training with extensions."""

from bricks.main_loop.main_loop import MainLoop, TrainingFinish

__all__ = ["MainLoop", "TrainingFinish"]
