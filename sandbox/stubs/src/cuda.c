/*
 * libcuda (driver API) stub: the driver library is installed but no GPU or kernel module is
 * there. cuInit fails with CUDA_ERROR_NO_DEVICE; cuDriverGetVersion works without a device,
 * as the real one does. -DSTUB_DRIVER_CUDA_VERSION=<int> (12050 for driver 555.42.06).
 */
#include "stub_common.h"

enum {
    CUDA_SUCCESS = 0,
    CUDA_ERROR_INVALID_VALUE = 1,
    CUDA_ERROR_NOT_INITIALIZED = 3,
    CUDA_ERROR_NO_DEVICE = 100,
};

STUB_EXPORT int cuInit(unsigned int flags)
{
    (void)flags;
    return CUDA_ERROR_NO_DEVICE;
}

STUB_EXPORT int cuDriverGetVersion(int *driverVersion)
{
    if (driverVersion == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    *driverVersion = STUB_DRIVER_CUDA_VERSION;
    return CUDA_SUCCESS;
}

STUB_EXPORT int cuDeviceGetCount(int *count)
{
    if (count != NULL)
        *count = 0;
    return CUDA_ERROR_NOT_INITIALIZED;
}

STUB_EXPORT int cuGetErrorName(int error, const char **name)
{
    if (name == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    switch (error) {
    case CUDA_SUCCESS: *name = "CUDA_SUCCESS"; break;
    case CUDA_ERROR_INVALID_VALUE: *name = "CUDA_ERROR_INVALID_VALUE"; break;
    case CUDA_ERROR_NOT_INITIALIZED: *name = "CUDA_ERROR_NOT_INITIALIZED"; break;
    case CUDA_ERROR_NO_DEVICE: *name = "CUDA_ERROR_NO_DEVICE"; break;
    default: *name = NULL; return CUDA_ERROR_INVALID_VALUE;
    }
    return CUDA_SUCCESS;
}

STUB_EXPORT int cuGetErrorString(int error, const char **text)
{
    if (text == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    switch (error) {
    case CUDA_SUCCESS: *text = "no error"; break;
    case CUDA_ERROR_INVALID_VALUE: *text = "invalid argument"; break;
    case CUDA_ERROR_NOT_INITIALIZED: *text = "initialization error"; break;
    case CUDA_ERROR_NO_DEVICE: *text = "no CUDA-capable device is detected"; break;
    default: *text = NULL; return CUDA_ERROR_INVALID_VALUE;
    }
    return CUDA_SUCCESS;
}
