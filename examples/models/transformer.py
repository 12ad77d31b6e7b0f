"""A small stack of transformer blocks cut into pipeline stages, with an overlap hook.

Each stage is a `Block` (pre-norm self-attention and MLP). `Block` defines DualPipe's overlap hook
`overlapped_forward_backward`, which schedc's torch backend calls for every overlapped F&B pair:
here it runs the forward and then the backward (a real model would launch its expert-parallel
all-to-all between them, on another stream). The loss is a regression on the last block's
output. See examples/models/mlp.py for what a model file must define.
"""

import torch

DIM, HEADS, SEQ, ROWS = 16, 2, 6, 2
HOOK_CALLS = 0  # how often the hook ran in this process (tests read it)


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.norm1 = torch.nn.LayerNorm(DIM)
        self.attn = torch.nn.MultiheadAttention(DIM, HEADS, batch_first=True)
        self.norm2 = torch.nn.LayerNorm(DIM)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(DIM, 2 * DIM), torch.nn.GELU(), torch.nn.Linear(2 * DIM, DIM))

    def forward(self, x):
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))

    @classmethod
    def overlapped_forward_backward(cls, module0, inputs0, criterion0, labels0,
                                    module1, loss1, outputs1, output_grads1):
        """DualPipe's overlap contract: module0's forward and module1's backward together."""
        global HOOK_CALLS
        HOOK_CALLS += 1
        outputs0 = module0(inputs0)
        loss0 = criterion0(outputs0, labels0) if criterion0 is not None else None
        if loss1 is not None:
            loss1.backward()
        else:
            torch.autograd.backward(outputs1, output_grads1)
        return outputs0, loss0


def build_stages(num_stages):
    torch.manual_seed(0)
    return [Block() for _ in range(num_stages)]


def loss_fn(output, target):
    return ((output - target) ** 2).sum()


def make_batch(microbatches, step=0):
    generator = torch.Generator().manual_seed(99 + step)
    inputs = [torch.randn(ROWS, SEQ, DIM, generator=generator) for _ in range(microbatches)]
    targets = [torch.randn(ROWS, SEQ, DIM, generator=generator) for _ in range(microbatches)]
    return inputs, targets
