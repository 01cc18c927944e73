"""The model zoo: the registered models, CIFAR and ImageNet ResNets and VGGs, the ViT, Hugging Face models, presets."""
