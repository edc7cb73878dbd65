/*
 * libcudart stub. Like the real runtime it asks libcuda.so.1 (if installed) for the driver's
 * CUDA version and for devices:
 *   no libcuda.so.1    -> cudaDriverGetVersion gives 0, cudaGetDeviceCount cudaErrorInsufficientDriver
 *   stub libcuda.so.1  -> its cuInit fails with CUDA_ERROR_NO_DEVICE, so cudaErrorNoDevice (100)
 * -DSTUB_CUDART_VERSION=<int> (12050 for CUDA 12.5).
 */
#include <dlfcn.h>
#include "stub_common.h"

enum {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorInsufficientDriver = 35,
    cudaErrorNoDevice = 100,
};

static void *open_driver(void)
{
    return dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
}

STUB_EXPORT int cudaRuntimeGetVersion(int *runtimeVersion)
{
    if (runtimeVersion == NULL)
        return cudaErrorInvalidValue;
    *runtimeVersion = STUB_CUDART_VERSION;
    return cudaSuccess;
}

STUB_EXPORT int cudaDriverGetVersion(int *driverVersion)
{
    void *driver;
    int (*get)(int *);
    int version = 0;

    if (driverVersion == NULL)
        return cudaErrorInvalidValue;
    driver = open_driver();
    if (driver != NULL) {
        get = (int (*)(int *))dlsym(driver, "cuDriverGetVersion");
        if (get == NULL || get(&version) != 0)
            version = 0;
        dlclose(driver);
    }
    *driverVersion = version;
    return cudaSuccess;
}

STUB_EXPORT int cudaGetDeviceCount(int *count)
{
    void *driver;
    int (*init)(unsigned int);
    int rc = cudaErrorInsufficientDriver;

    if (count == NULL)
        return cudaErrorInvalidValue;
    *count = 0;
    driver = open_driver();
    if (driver != NULL) {
        init = (int (*)(unsigned int))dlsym(driver, "cuInit");
        if (init != NULL && init(0) != 0)
            rc = cudaErrorNoDevice;
        dlclose(driver);
    }
    return rc;
}

STUB_EXPORT int cudaGetLastError(void)
{
    return cudaSuccess;
}

STUB_EXPORT const char *cudaGetErrorName(int error)
{
    switch (error) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorInsufficientDriver: return "cudaErrorInsufficientDriver";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    default: return "cudaErrorUnknown";
    }
}

STUB_EXPORT const char *cudaGetErrorString(int error)
{
    switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorInsufficientDriver:
        return "CUDA driver version is insufficient for CUDA runtime version";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    default: return "unknown error";
    }
}
