"""The engine: the frozen VGG19 (weights, features), the losses, the style targets, the per-image
optimisation (optimize.Stylizer), colour preservation and device choice. Knows nothing of files."""
