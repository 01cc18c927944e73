"""What is registered, readable without torch: declared hyperparameters, the registry index, the model registry."""
