"""The pure floor: tensors in, tensors out, torch alone. Nothing here runs a model or knows Lightning."""
