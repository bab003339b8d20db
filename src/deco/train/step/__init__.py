"""The optimizer step: the loop (start here: Loop.step), summed token loss, AdamW groups and schedule,
the accelerate differences, the model wrapper, torch.compile, and what each stage trains.
"""
