"""mnist_squeeze[True-True-2-squeeze-0.1-conv-same-6]: a standalone PyTorch model exported by nas 0.1.0.

weights: confirmation seed 0 of trial 17, study 'mnist_squeeze' (sqlite:///results/studies.db)
confirmed: trial 17: 9,970 params; 3/3 seeds >= 99.40% at epoch 15; test mean 99.52%, min 99.49%, max 99.53%
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
                Conv2d-1            [-1, 6, 28, 28]              60      3        42,336
                  ReLU-2            [-1, 6, 28, 28]               0      3             0
           BatchNorm2d-3            [-1, 6, 28, 28]              12      3             0
                Conv2d-4           [-1, 12, 28, 28]             660      5       508,032
                  ReLU-5           [-1, 12, 28, 28]               0      5             0
           BatchNorm2d-6           [-1, 12, 28, 28]              24      5             0
             MaxPool2d-7           [-1, 12, 14, 14]               0      6             0
           BatchNorm2d-8           [-1, 12, 14, 14]              24      6             0
                Conv2d-9            [-1, 6, 14, 14]              78      6        14,112
              Dropout-10            [-1, 6, 14, 14]               0      6             0
               Conv2d-11           [-1, 12, 14, 14]             660     10       127,008
                 ReLU-12           [-1, 12, 14, 14]               0     10             0
          BatchNorm2d-13           [-1, 12, 14, 14]              24     10             0
               Conv2d-14           [-1, 24, 14, 14]           2,616     14       508,032
                 ReLU-15           [-1, 24, 14, 14]               0     14             0
          BatchNorm2d-16           [-1, 24, 14, 14]              48     14             0
            MaxPool2d-17             [-1, 24, 7, 7]               0     16             0
          BatchNorm2d-18             [-1, 24, 7, 7]              48     16             0
               Conv2d-19              [-1, 6, 7, 7]             150     16         7,056
              Dropout-20              [-1, 6, 7, 7]               0     16             0
               Conv2d-21             [-1, 12, 7, 7]             660     24        31,752
                 ReLU-22             [-1, 12, 7, 7]               0     24             0
          BatchNorm2d-23             [-1, 12, 7, 7]              24     24             0
               Conv2d-24             [-1, 24, 7, 7]           2,616     32       127,008
                 ReLU-25             [-1, 24, 7, 7]               0     32             0
          BatchNorm2d-26             [-1, 24, 7, 7]              48     32             0
            MaxPool2d-27             [-1, 24, 3, 3]               0     36             0
          BatchNorm2d-28             [-1, 24, 3, 3]              48     36             0
               Conv2d-29             [-1, 10, 1, 1]           2,170     52         2,160
              Flatten-30                   [-1, 10]               0     52             0
           LogSoftmax-31                   [-1, 10]               0     52             0
    =====================================================================================
    Total params: 9,970
    Trainable params: 9,970
    Non-trainable params: 0
    -------------------------------------------------------------------------------------
    Input size (MB): 0.00
    Forward/backward pass size (MB): 0.60
    Params size (MB): 0.04
    Estimated Total Size (MB): 0.65
    -------------------------------------------------------------------------------------
    Receptive field: 52
    Multiply-adds: 1,367,496

Constraints:

    params < 20,000 ✓ (9,970)
    no fully-connected layer ✓
    outputs 10 classes ✓ (output [10])
"""
import torch
from torch import nn


class Net(nn.Module):
    """mnist_squeeze[True-True-2-squeeze-0.1-conv-same-6]: 9,970 params, receptive field 52, input [1, 28, 28], output [10]."""

    def __init__(self):
        super().__init__()
        self.s_block1 = nn.Sequential(
            nn.Conv2d(1, 6, 3, padding=1),   # [6, 28, 28]  RF 3
            nn.ReLU(),                       # [6, 28, 28]  RF 3
            nn.BatchNorm2d(6),               # [6, 28, 28]  RF 3
            nn.Conv2d(6, 12, 3, padding=1),  # [12, 28, 28]  RF 5
            nn.ReLU(),                       # [12, 28, 28]  RF 5
            nn.BatchNorm2d(12),              # [12, 28, 28]  RF 5
            nn.MaxPool2d(2),                 # [12, 14, 14]  RF 6
            nn.BatchNorm2d(12),              # [12, 14, 14]  RF 6
            nn.Conv2d(12, 6, 1),             # [6, 14, 14]  RF 6
            nn.Dropout(p=0.1),               # [6, 14, 14]  RF 6
        )
        self.s_block2 = nn.Sequential(
            nn.Conv2d(6, 12, 3, padding=1),   # [12, 14, 14]  RF 10
            nn.ReLU(),                        # [12, 14, 14]  RF 10
            nn.BatchNorm2d(12),               # [12, 14, 14]  RF 10
            nn.Conv2d(12, 24, 3, padding=1),  # [24, 14, 14]  RF 14
            nn.ReLU(),                        # [24, 14, 14]  RF 14
            nn.BatchNorm2d(24),               # [24, 14, 14]  RF 14
            nn.MaxPool2d(2),                  # [24, 7, 7]  RF 16
            nn.BatchNorm2d(24),               # [24, 7, 7]  RF 16
        )
        self.s_squeeze2 = nn.Sequential(
            nn.Conv2d(24, 6, 1),  # [6, 7, 7]  RF 16
            nn.Dropout(p=0.1),    # [6, 7, 7]  RF 16
        )
        self.s_block3 = nn.Sequential(
            nn.Conv2d(6, 12, 3, padding=1),   # [12, 7, 7]  RF 24
            nn.ReLU(),                        # [12, 7, 7]  RF 24
            nn.BatchNorm2d(12),               # [12, 7, 7]  RF 24
            nn.Conv2d(12, 24, 3, padding=1),  # [24, 7, 7]  RF 32
            nn.ReLU(),                        # [24, 7, 7]  RF 32
            nn.BatchNorm2d(24),               # [24, 7, 7]  RF 32
            nn.MaxPool2d(2),                  # [24, 3, 3]  RF 36
            nn.BatchNorm2d(24),               # [24, 3, 3]  RF 36
        )
        self.s_head = nn.Sequential(
            nn.Conv2d(24, 10, 3),  # [10, 1, 1]  RF 52
        )
        self.output = nn.Sequential(
            nn.Flatten(),          # [10]  RF 52
            nn.LogSoftmax(dim=1),  # [10]  RF 52
        )

    def forward(self, x):
        x = self.s_block1(x)
        x = self.s_block2(x)
        x = self.s_squeeze2(x)
        x = self.s_block3(x)
        x = self.s_head(x)
        x = self.output(x)
        # As nas builds it: a final (N, C, 1, 1) map is the logits, flattened to (N, C).
        return x.flatten(1) if x.dim() > 2 else x


def load(path="weights.pt", map_location="cpu"):
    """A Net holding the weights saved at ``path``, in eval mode."""
    net = Net()
    net.load_state_dict(torch.load(path, map_location=map_location, weights_only=True))
    return net.eval()


if __name__ == "__main__":  # `python model.py` next to weights.pt: a smoke test
    print(load()(torch.zeros(1, 1, 28, 28)).shape)
