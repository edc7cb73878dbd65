/* libnvidia-ml stub: the library is there, the kernel driver is not loaded. */
#include "stub_common.h"

enum {
    NVML_SUCCESS = 0,
    NVML_ERROR_UNINITIALIZED = 1,
    NVML_ERROR_INVALID_ARGUMENT = 2,
    NVML_ERROR_DRIVER_NOT_LOADED = 9,
};

STUB_EXPORT int nvmlInit_v2(void) { return NVML_ERROR_DRIVER_NOT_LOADED; }
STUB_EXPORT int nvmlInit(void) { return NVML_ERROR_DRIVER_NOT_LOADED; }
STUB_EXPORT int nvmlInitWithFlags(unsigned int flags)
{
    (void)flags;
    return NVML_ERROR_DRIVER_NOT_LOADED;
}
STUB_EXPORT int nvmlShutdown(void) { return NVML_ERROR_UNINITIALIZED; }

STUB_EXPORT int nvmlSystemGetDriverVersion(char *version, unsigned int length)
{
    (void)version;
    (void)length;
    return NVML_ERROR_UNINITIALIZED;
}

STUB_EXPORT int nvmlDeviceGetCount_v2(unsigned int *count)
{
    if (count != NULL)
        *count = 0;
    return NVML_ERROR_UNINITIALIZED;
}

STUB_EXPORT const char *nvmlErrorString(int result)
{
    switch (result) {
    case NVML_SUCCESS: return "Success";
    case NVML_ERROR_UNINITIALIZED: return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT: return "Invalid Argument";
    case NVML_ERROR_DRIVER_NOT_LOADED: return "Driver Not Loaded";
    default: return "Unknown Error";
    }
}
