"""mnist_tiny[True-0.0-2-8-12-12-12-16-16]: a standalone PyTorch model exported by nas 0.1.0.

weights: confirmation seed 0 of tiny_nodrop, study 'mnist_tiny' (sqlite:///results/studies.db)
confirmed: tiny_nodrop: 7,882 params; 3/3 seeds >= 99.40% at epoch 15; test mean 99.48%, min 99.40%, max 99.54%
target: 99.40%
meets target: yes
input: mnist images scaled to 0..1, then normalised per channel with mean [0.1307] and std [0.3081]

Needs only torch. Usage, next to weights.pt:

    >>> import torch
    >>> from model import load
    >>> net = load("weights.pt")  # in eval mode
    >>> net(torch.zeros(1, 1, 28, 28)).shape
    torch.Size([1, 10])

Layer table (torchsummary's format, with receptive field and multiply-adds):

    -------------------------------------------------------------------------------------
            Layer (type)               Output Shape         Param #     RF          MACs
    =====================================================================================
                Conv2d-1            [-1, 8, 28, 28]              72      3        56,448
                  ReLU-2            [-1, 8, 28, 28]               0      3             0
           BatchNorm2d-3            [-1, 8, 28, 28]              16      3             0
                Conv2d-4           [-1, 12, 28, 28]             864      5       677,376
                  ReLU-5           [-1, 12, 28, 28]               0      5             0
           BatchNorm2d-6           [-1, 12, 28, 28]              24      5             0
             MaxPool2d-7           [-1, 12, 14, 14]               0      6             0
                Conv2d-8           [-1, 12, 14, 14]           1,296     10       254,016
                  ReLU-9           [-1, 12, 14, 14]               0     10             0
          BatchNorm2d-10           [-1, 12, 14, 14]              24     10             0
               Conv2d-11           [-1, 12, 14, 14]           1,296     14       254,016
                 ReLU-12           [-1, 12, 14, 14]               0     14             0
          BatchNorm2d-13           [-1, 12, 14, 14]              24     14             0
               Conv2d-14           [-1, 16, 14, 14]           1,728     18       338,688
                 ReLU-15           [-1, 16, 14, 14]               0     18             0
          BatchNorm2d-16           [-1, 16, 14, 14]              32     18             0
               Conv2d-17           [-1, 16, 14, 14]           2,304     22       451,584
                 ReLU-18           [-1, 16, 14, 14]               0     22             0
          BatchNorm2d-19           [-1, 16, 14, 14]              32     22             0
               Conv2d-20           [-1, 10, 14, 14]             170     22        31,360
    AdaptiveAvgPool2d-21             [-1, 10, 1, 1]               0     48             0
              Flatten-22                   [-1, 10]               0     48             0
           LogSoftmax-23                   [-1, 10]               0     48             0
    =====================================================================================
    Total params: 7,882
    Trainable params: 7,882
    Non-trainable params: 0
    -------------------------------------------------------------------------------------
    Input size (MB): 0.00
    Forward/backward pass size (MB): 0.64
    Params size (MB): 0.03
    Estimated Total Size (MB): 0.68
    -------------------------------------------------------------------------------------
    Receptive field: 48
    Multiply-adds: 2,063,488

Constraints:

    params < 8,000 ✓ (7,882)
    RF > 44 ✓ (48)
    requires gap ✓
    no fully-connected layer ✓
    outputs 10 classes ✓ (output [10])
"""
import torch
from torch import nn


class Net(nn.Module):
    """mnist_tiny[True-0.0-2-8-12-12-12-16-16]: 7,882 params, receptive field 48, input [1, 28, 28], output [10]."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1, bias=False),    # [8, 28, 28]  RF 3
            nn.ReLU(),                                    # [8, 28, 28]  RF 3
            nn.BatchNorm2d(8),                            # [8, 28, 28]  RF 3
            nn.Conv2d(8, 12, 3, padding=1, bias=False),   # [12, 28, 28]  RF 5
            nn.ReLU(),                                    # [12, 28, 28]  RF 5
            nn.BatchNorm2d(12),                           # [12, 28, 28]  RF 5
            nn.MaxPool2d(2),                              # [12, 14, 14]  RF 6
            nn.Conv2d(12, 12, 3, padding=1, bias=False),  # [12, 14, 14]  RF 10
            nn.ReLU(),                                    # [12, 14, 14]  RF 10
            nn.BatchNorm2d(12),                           # [12, 14, 14]  RF 10
            nn.Conv2d(12, 12, 3, padding=1, bias=False),  # [12, 14, 14]  RF 14
            nn.ReLU(),                                    # [12, 14, 14]  RF 14
            nn.BatchNorm2d(12),                           # [12, 14, 14]  RF 14
            nn.Conv2d(12, 16, 3, padding=1, bias=False),  # [16, 14, 14]  RF 18
            nn.ReLU(),                                    # [16, 14, 14]  RF 18
            nn.BatchNorm2d(16),                           # [16, 14, 14]  RF 18
            nn.Conv2d(16, 16, 3, padding=1, bias=False),  # [16, 14, 14]  RF 22
            nn.ReLU(),                                    # [16, 14, 14]  RF 22
            nn.BatchNorm2d(16),                           # [16, 14, 14]  RF 22
        )
        self.head = nn.Sequential(
            nn.Conv2d(16, 10, 1),     # [10, 14, 14]  RF 22
            nn.AdaptiveAvgPool2d(1),  # [10, 1, 1]  RF 48
            nn.Flatten(),             # [10]  RF 48
            nn.LogSoftmax(dim=1),     # [10]  RF 48
        )

    def forward(self, x):
        x = self.features(x)
        x = self.head(x)
        # As nas builds it: a final (N, C, 1, 1) map is the logits, flattened to (N, C).
        return x.flatten(1) if x.dim() > 2 else x


def load(path="weights.pt", map_location="cpu"):
    """A Net holding the weights saved at ``path``, in eval mode."""
    net = Net()
    net.load_state_dict(torch.load(path, map_location=map_location, weights_only=True))
    return net.eval()


if __name__ == "__main__":  # `python model.py` next to weights.pt: a smoke test
    print(load()(torch.zeros(1, 1, 28, 28)).shape)
