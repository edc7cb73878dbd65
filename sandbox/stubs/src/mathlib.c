/*
 * Version getters of the CUDA math libraries, one library per build:
 *   -DSTUB_CUBLAS / -DSTUB_CUBLASLT / -DSTUB_CUFFT / -DSTUB_CURAND / -DSTUB_CUSOLVER /
 *   -DSTUB_CUSPARSE / -DSTUB_NVRTC
 * with -DSTUB_MAJOR, -DSTUB_MINOR, -DSTUB_PATCH (the library's own version, e.g. 11 2 3 for
 * cuFFT 11.2.3.61) and, for cublasLt, -DSTUB_CUDART_VERSION.
 * Integer encodings follow each library's header: CUBLAS_VERSION = M*10000+m*100+p,
 * CUFFT/CURAND/CUSOLVER/CUSPARSE_VERSION = M*1000+m*100+p.
 * libraryPropertyType: MAJOR_VERSION = 0, MINOR_VERSION = 1, PATCH_LEVEL = 2.
 */
#include "stub_common.h"

static __attribute__((unused)) int property(int type, int *value)
{
    if (value == NULL)
        return 1;
    switch (type) {
    case 0: *value = STUB_MAJOR; return 0;
    case 1: *value = STUB_MINOR; return 0;
    case 2: *value = STUB_PATCH; return 0;
    default: return 1;
    }
}

#define VERSION_1000 (STUB_MAJOR * 1000 + STUB_MINOR * 100 + STUB_PATCH)

#if defined(STUB_CUBLAS)
/* cublasStatus_t: SUCCESS 0, NOT_INITIALIZED 1, INVALID_VALUE 7 */
STUB_EXPORT int cublasGetVersion_v2(void *handle, int *version)
{
    (void)handle;
    if (version == NULL)
        return 7;
    *version = STUB_MAJOR * 10000 + STUB_MINOR * 100 + STUB_PATCH;
    return 0;
}
STUB_EXPORT int cublasGetProperty(int type, int *value)
{
    return property(type, value) == 0 ? 0 : 7;
}
STUB_EXPORT int cublasCreate_v2(void **handle)
{
    if (handle != NULL)
        *handle = NULL;
    return 1;
}
#elif defined(STUB_CUBLASLT)
STUB_EXPORT size_t cublasLtGetVersion(void)
{
    return (size_t)(STUB_MAJOR * 10000 + STUB_MINOR * 100 + STUB_PATCH);
}
STUB_EXPORT size_t cublasLtGetCudartVersion(void)
{
    return (size_t)STUB_CUDART_VERSION;
}
STUB_EXPORT int cublasLtGetProperty(int type, int *value)
{
    return property(type, value) == 0 ? 0 : 7;
}
#elif defined(STUB_CUFFT)
STUB_EXPORT int cufftGetVersion(int *version)
{
    if (version == NULL)
        return 4; /* CUFFT_INVALID_VALUE */
    *version = VERSION_1000;
    return 0;
}
STUB_EXPORT int cufftGetProperty(int type, int *value)
{
    return property(type, value) == 0 ? 0 : 4;
}
#elif defined(STUB_CURAND)
STUB_EXPORT int curandGetVersion(int *version)
{
    if (version == NULL)
        return 104; /* the real one does not check; the stub refuses NULL */
    *version = VERSION_1000;
    return 0;
}
STUB_EXPORT int curandGetProperty(int type, int *value)
{
    return property(type, value) == 0 ? 0 : 104; /* CURAND_STATUS_OUT_OF_RANGE */
}
#elif defined(STUB_CUSOLVER)
STUB_EXPORT int cusolverGetVersion(int *version)
{
    if (version == NULL)
        return 3; /* CUSOLVER_STATUS_INVALID_VALUE */
    *version = VERSION_1000;
    return 0;
}
STUB_EXPORT int cusolverGetProperty(int type, int *value)
{
    return property(type, value) == 0 ? 0 : 3;
}
#elif defined(STUB_CUSPARSE)
STUB_EXPORT int cusparseGetVersion(void *handle, int *version)
{
    (void)handle;
    if (version == NULL)
        return 3; /* CUSPARSE_STATUS_INVALID_VALUE */
    *version = VERSION_1000;
    return 0;
}
STUB_EXPORT int cusparseGetProperty(int type, int *value)
{
    return property(type, value) == 0 ? 0 : 3;
}
#elif defined(STUB_NVRTC)
STUB_EXPORT int nvrtcVersion(int *major, int *minor)
{
    if (major == NULL || minor == NULL)
        return 3; /* NVRTC_ERROR_INVALID_INPUT */
    *major = STUB_MAJOR;
    *minor = STUB_MINOR;
    return 0;
}
STUB_EXPORT const char *nvrtcGetErrorString(int result)
{
    return result == 0 ? "NVRTC_SUCCESS" : "NVRTC_ERROR_INTERNAL_ERROR";
}
#else
#error "define one of STUB_CUBLAS STUB_CUBLASLT STUB_CUFFT STUB_CURAND STUB_CUSOLVER STUB_CUSPARSE STUB_NVRTC"
#endif
