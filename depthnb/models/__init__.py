"""Networks: stereo (DispNet, StereoNet), monocular depth and pose (DepthNet, PoseNet, GradScale),
optical flow (FlowNet).

Every network takes images B×3×H×W in [0, 1] of any size (padded inside, outputs cropped back) and returns
multi-scale outputs as lists ordered fine → coarse, scale 0 at the input's resolution."""
from .stereo import DispNet, StereoNet
from .mono import DepthNet, PoseNet, GradScale
from .flow import FlowNet
