from .assigners import BatchedHungarianAssigner

__all__ = ['BatchedHungarianAssigner']
