from .resnet_dc5 import ResNetDC5

__all__ = ['ResNetDC5']
