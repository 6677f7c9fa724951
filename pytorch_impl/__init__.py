"""PyTorch implementations. Canonical layout (channels-first, torch.nn names) is native here."""
