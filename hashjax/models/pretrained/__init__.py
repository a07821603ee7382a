"""Pretrained weights: the weight cache, grafting loaded variables into a
model, and one converter per source format (Keras ResNet-50, torchvision /
timm ResNet, timm / Microsoft Swin, hashjax's own converted files)."""
