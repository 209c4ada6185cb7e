"""mnist_squeeze[True-False-3-squeeze-0.2-gap-same-8]: a standalone PyTorch model exported by nas 0.1.0.

weights: confirmation seed 0 of trial 0, study 'mnist_squeeze' (sqlite:///results/studies.db)
confirmed: trial 0: 18,666 params; 3/3 seeds >= 99.40% at epoch 12; test mean 99.47%, min 99.47%, max 99.48%
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
                Conv2d-1            [-1, 8, 28, 28]              80      3        56,448
                  ReLU-2            [-1, 8, 28, 28]               0      3             0
           BatchNorm2d-3            [-1, 8, 28, 28]              16      3             0
                Conv2d-4           [-1, 16, 28, 28]           1,168      5       903,168
                  ReLU-5           [-1, 16, 28, 28]               0      5             0
           BatchNorm2d-6           [-1, 16, 28, 28]              32      5             0
                Conv2d-7           [-1, 32, 28, 28]           4,640      7     3,612,672
                  ReLU-8           [-1, 32, 28, 28]               0      7             0
           BatchNorm2d-9           [-1, 32, 28, 28]              64      7             0
            MaxPool2d-10           [-1, 32, 14, 14]               0      8             0
               Conv2d-11            [-1, 8, 14, 14]             264      8        50,176
              Dropout-12            [-1, 8, 14, 14]               0      8             0
               Conv2d-13           [-1, 16, 14, 14]           1,168     12       225,792
                 ReLU-14           [-1, 16, 14, 14]               0     12             0
          BatchNorm2d-15           [-1, 16, 14, 14]              32     12             0
               Conv2d-16           [-1, 32, 14, 14]           4,640     16       903,168
                 ReLU-17           [-1, 32, 14, 14]               0     16             0
          BatchNorm2d-18           [-1, 32, 14, 14]              64     16             0
            MaxPool2d-19             [-1, 32, 7, 7]               0     18             0
               Conv2d-20              [-1, 8, 7, 7]             264     18        12,544
              Dropout-21              [-1, 8, 7, 7]               0     18             0
               Conv2d-22             [-1, 16, 7, 7]           1,168     26        56,448
                 ReLU-23             [-1, 16, 7, 7]               0     26             0
          BatchNorm2d-24             [-1, 16, 7, 7]              32     26             0
               Conv2d-25             [-1, 32, 7, 7]           4,640     34       225,792
                 ReLU-26             [-1, 32, 7, 7]               0     34             0
          BatchNorm2d-27             [-1, 32, 7, 7]              64     34             0
            MaxPool2d-28             [-1, 32, 3, 3]               0     38             0
               Conv2d-29             [-1, 10, 3, 3]             330     38         2,880
              Dropout-30             [-1, 10, 3, 3]               0     38             0
            AvgPool2d-31             [-1, 10, 1, 1]               0     54             0
              Flatten-32                   [-1, 10]               0     54             0
           LogSoftmax-33                   [-1, 10]               0     54             0
    =====================================================================================
    Total params: 18,666
    Trainable params: 18,666
    Non-trainable params: 0
    -------------------------------------------------------------------------------------
    Input size (MB): 0.00
    Forward/backward pass size (MB): 1.37
    Params size (MB): 0.07
    Estimated Total Size (MB): 1.44
    -------------------------------------------------------------------------------------
    Receptive field: 54
    Multiply-adds: 6,049,088

Constraints:

    params < 20,000 ✓ (18,666)
    no fully-connected layer ✓
    outputs 10 classes ✓ (output [10])
"""
import torch
from torch import nn


class Net(nn.Module):
    """mnist_squeeze[True-False-3-squeeze-0.2-gap-same-8]: 18,666 params, receptive field 54, input [1, 28, 28], output [10]."""

    def __init__(self):
        super().__init__()
        self.s_block1 = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1),    # [8, 28, 28]  RF 3
            nn.ReLU(),                        # [8, 28, 28]  RF 3
            nn.BatchNorm2d(8),                # [8, 28, 28]  RF 3
            nn.Conv2d(8, 16, 3, padding=1),   # [16, 28, 28]  RF 5
            nn.ReLU(),                        # [16, 28, 28]  RF 5
            nn.BatchNorm2d(16),               # [16, 28, 28]  RF 5
            nn.Conv2d(16, 32, 3, padding=1),  # [32, 28, 28]  RF 7
            nn.ReLU(),                        # [32, 28, 28]  RF 7
            nn.BatchNorm2d(32),               # [32, 28, 28]  RF 7
            nn.MaxPool2d(2),                  # [32, 14, 14]  RF 8
            nn.Conv2d(32, 8, 1),              # [8, 14, 14]  RF 8
            nn.Dropout(p=0.2),                # [8, 14, 14]  RF 8
        )
        self.s_block2 = nn.Sequential(
            nn.Conv2d(8, 16, 3, padding=1),   # [16, 14, 14]  RF 12
            nn.ReLU(),                        # [16, 14, 14]  RF 12
            nn.BatchNorm2d(16),               # [16, 14, 14]  RF 12
            nn.Conv2d(16, 32, 3, padding=1),  # [32, 14, 14]  RF 16
            nn.ReLU(),                        # [32, 14, 14]  RF 16
            nn.BatchNorm2d(32),               # [32, 14, 14]  RF 16
            nn.MaxPool2d(2),                  # [32, 7, 7]  RF 18
        )
        self.s_squeeze2 = nn.Sequential(
            nn.Conv2d(32, 8, 1),  # [8, 7, 7]  RF 18
            nn.Dropout(p=0.2),    # [8, 7, 7]  RF 18
        )
        self.s_block3 = nn.Sequential(
            nn.Conv2d(8, 16, 3, padding=1),   # [16, 7, 7]  RF 26
            nn.ReLU(),                        # [16, 7, 7]  RF 26
            nn.BatchNorm2d(16),               # [16, 7, 7]  RF 26
            nn.Conv2d(16, 32, 3, padding=1),  # [32, 7, 7]  RF 34
            nn.ReLU(),                        # [32, 7, 7]  RF 34
            nn.BatchNorm2d(32),               # [32, 7, 7]  RF 34
            nn.MaxPool2d(2),                  # [32, 3, 3]  RF 38
        )
        self.s_head = nn.Sequential(
            nn.Conv2d(32, 10, 1),  # [10, 3, 3]  RF 38
            nn.Dropout(p=0.2),     # [10, 3, 3]  RF 38
            nn.AvgPool2d(3),       # [10, 1, 1]  RF 54
        )
        self.output = nn.Sequential(
            nn.Flatten(),          # [10]  RF 54
            nn.LogSoftmax(dim=1),  # [10]  RF 54
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
