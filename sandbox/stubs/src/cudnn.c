/*
 * libcudnn stub: version getters only.
 * -DSTUB_CUDNN_VERSION=<int> (cuDNN 9: M*10000+m*100+p, 90300 for 9.3.0),
 * -DSTUB_MAJOR/-DSTUB_MINOR/-DSTUB_PATCH, -DSTUB_CUDART_VERSION=<int> (12050).
 */
#include "stub_common.h"

STUB_EXPORT size_t cudnnGetVersion(void)
{
    return (size_t)STUB_CUDNN_VERSION;
}

STUB_EXPORT size_t cudnnGetCudartVersion(void)
{
    return (size_t)STUB_CUDART_VERSION;
}

/* cudnnStatus_t: SUCCESS 0, BAD_PARAM 2000 (cuDNN 9 numbering) */
STUB_EXPORT int cudnnGetProperty(int type, int *value)
{
    if (value == NULL)
        return 2000;
    switch (type) {
    case 0: *value = STUB_MAJOR; return 0;
    case 1: *value = STUB_MINOR; return 0;
    case 2: *value = STUB_PATCH; return 0;
    default: return 2000;
    }
}

STUB_EXPORT const char *cudnnGetErrorString(int status)
{
    return status == 0 ? "CUDNN_STATUS_SUCCESS" : "CUDNN_STATUS_NOT_INITIALIZED";
}
