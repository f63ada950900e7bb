"""The engine inside training frameworks that step the optimizer themselves: a PyTorch Lightning callback
(``rigl_repro.integrations.lightning``) and a Hugging Face ``Trainer`` callback
(``rigl_repro.integrations.huggingface``). Each module imports its framework; this package imports neither."""
