// The main of the test programs that need a CUDA device. Without one it says why and exits 77, which CTest reports
// as skipped (SKIP_RETURN_CODE), not as passed.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>
#include <string>

#include "kernels/cuda/device_info.h"

int main(int argc, char** argv) {
  std::string why;
  if (pagedllm::query_cuda_devices(why).empty()) {
    std::printf("skipped: no CUDA device: %s\n", why.c_str());
    return 77;
  }
  doctest::Context context(argc, argv);
  return context.run();
}
