"""dyna_stream: input-adaptive spatio-temporal forecasting (Dyna-Pruner) for streaming sensors."""

__version__ = "0.1.0"
