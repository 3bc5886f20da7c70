// Stand-in for the header PyTorch's own build generates, which Debian's
// libtorch-dev leaves out. Used only by the fairserve_cuda_check target
// (CMakeLists.txt), which compiles the CUDA sources against Debian's
// c10/cuda headers on machines without a CUDA libtorch. A real CUDA
// libtorch ships its own and never sees this directory.
#pragma once
#define C10_CUDA_BUILD_SHARED_LIBS
