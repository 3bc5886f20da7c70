# One source tree, two libtorches: Debian's libtorch 1.13 (CPU) and a CUDA
# libtorch such as the one inside a PyTorch 2.x wheel (docs/gpu.md).
#
# - The C++ standard is 17, or higher when the Torch package asks for it
#   (PyTorch >= 2.10 headers use C++20). FAIRSERVE_CXX_STANDARD overrides.
# - The C++ ABI must be the one every other library here uses (Debian's are
#   all built with the C++11 ABI); a Torch built with the old ABI is refused
#   here rather than failing at link time.
# - FAIRSERVE_WITH_CUDA is on when Torch was built with CUDA; only then are
#   the CUDA-only sources (src/models/cuda_backend.cc) compiled and linked.
# - FAIRSERVE_CUDA_CHECK compiles those sources anyway, against this Torch's
#   c10/cuda headers and the CUDA toolkit's, when Torch is CPU-only: Debian's
#   libtorch-dev ships the headers but not one generated header, for which
#   cmake/cuda-check-include holds a stand-in. Nothing of it is linked.

set(_fs_std 17)
if(TARGET torch)
  get_target_property(_fs_torch_std torch CXX_STANDARD)
  get_target_property(_fs_torch_features torch INTERFACE_COMPILE_FEATURES)
  if(_fs_torch_std AND _fs_torch_std GREATER _fs_std)
    set(_fs_std ${_fs_torch_std})
  endif()
  if(_fs_torch_features)
    foreach(_fs_std_candidate 20 23)
      if("cxx_std_${_fs_std_candidate}" IN_LIST _fs_torch_features AND
         _fs_std_candidate GREATER _fs_std)
        set(_fs_std ${_fs_std_candidate})
      endif()
    endforeach()
  endif()
endif()
if(Torch_VERSION AND Torch_VERSION VERSION_GREATER_EQUAL 2.10 AND _fs_std LESS 20)
  set(_fs_std 20)
endif()
set(FAIRSERVE_CXX_STANDARD "" CACHE STRING "C++ standard; empty = 17 or what Torch asks for")
if(FAIRSERVE_CXX_STANDARD)
  set(_fs_std ${FAIRSERVE_CXX_STANDARD})
endif()
set(CMAKE_CXX_STANDARD ${_fs_std})
message(STATUS "fairserve: C++${_fs_std} (Torch ${Torch_VERSION})")

if(TORCH_CXX_FLAGS MATCHES "_GLIBCXX_USE_CXX11_ABI=0")
  message(FATAL_ERROR
    "This Torch was built with the pre-C++11 ABI (TORCH_CXX_FLAGS: ${TORCH_CXX_FLAGS}), but "
    "gRPC, protobuf and Abseil here use the C++11 ABI. Use a libtorch built with "
    "_GLIBCXX_USE_CXX11_ABI=1 (every PyTorch wheel since 2.7 is).")
endif()

if(TORCH_CUDA_LIBRARIES OR CAFFE2_USE_CUDA OR TARGET torch_cuda OR TARGET c10_cuda)
  set(FAIRSERVE_WITH_CUDA ON)
  # cuda_backend.cc includes the CUDA runtime's header and calls it.
  find_package(CUDAToolkit REQUIRED)
else()
  set(FAIRSERVE_WITH_CUDA OFF)
endif()
message(STATUS "fairserve: CUDA ${FAIRSERVE_WITH_CUDA}")

set(FAIRSERVE_CUDA_TOOLKIT_INCLUDE "/usr/local/cuda/include" CACHE PATH
    "CUDA toolkit headers for the CUDA compile check")
set(_fs_check_default OFF)
if(NOT FAIRSERVE_WITH_CUDA AND EXISTS "${FAIRSERVE_CUDA_TOOLKIT_INCLUDE}/cuda_runtime_api.h")
  foreach(_fs_dir ${TORCH_INCLUDE_DIRS})
    if(EXISTS "${_fs_dir}/c10/cuda/CUDAStream.h")
      set(_fs_check_default ON)
    endif()
  endforeach()
endif()
option(FAIRSERVE_CUDA_CHECK
       "Compile (never link) the CUDA sources against this CPU Torch's c10/cuda headers"
       ${_fs_check_default})
if(FAIRSERVE_CUDA_CHECK AND FAIRSERVE_WITH_CUDA)
  set(FAIRSERVE_CUDA_CHECK OFF)  # the real build compiles them
endif()
message(STATUS "fairserve: CUDA compile check ${FAIRSERVE_CUDA_CHECK}")
