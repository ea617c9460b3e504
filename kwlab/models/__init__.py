"""kwlab's small-image model zoo; importing this package registers its ``cifar_*`` models with timm."""

from kwlab.models.cifar_mobilenetv2 import CifarMobileNetV2
from kwlab.models.cifar_resnet import CifarResNet
from kwlab.models.factory import timm_model

__all__ = ["CifarMobileNetV2", "CifarResNet", "timm_model"]
