"""A model wrapper for distributed *testing* without DistributedDataParallel."""
from torch import nn

from mmdag.registry import MODEL_WRAPPERS


@MODEL_WRAPPERS.register_module()
class TestOnlyDistributedWrapper(nn.Module):
    """Holds the model under a launcher without DDP.

    Testing needs no gradient synchronisation, and mmengine's default DDP
    wrapper refuses CPU modules (it passes ``device_ids``). ``tools/test.py``
    selects this wrapper when it runs distributed on the CPU; each rank keeps
    its own copy of the model and the metrics gather results across ranks as
    usual.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def test_step(self, data):
        return self.module.test_step(data)

    def val_step(self, data):
        return self.module.val_step(data)

    def train_step(self, *args, **kwargs):
        raise RuntimeError('TestOnlyDistributedWrapper is for testing; train with the default '
                           'DDP wrapper.')
