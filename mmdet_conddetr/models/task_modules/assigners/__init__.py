from .batched_hungarian_assigner import BatchedHungarianAssigner

__all__ = ['BatchedHungarianAssigner']
