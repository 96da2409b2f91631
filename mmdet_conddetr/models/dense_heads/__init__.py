from .conditional_detr_head import ConditionalDETRHead

__all__ = ['ConditionalDETRHead']
