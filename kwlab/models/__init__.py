"""kwlab's small-image model zoo; importing this package registers its ``cifar_*`` models with timm."""

from kwlab.models.cifar_mobilenetv2 import CifarMobileNetV2
from kwlab.models.cifar_resnet import CifarResNet

__all__ = ["CifarMobileNetV2", "CifarResNet"]
