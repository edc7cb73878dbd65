/* Sandbox stub of cublas_api.h: only what the stub libcublas exports. */
#ifndef CUBLAS_API_H_
#define CUBLAS_API_H_

#include "library_types.h"

#define CUBLAS_VER_MAJOR @MAJOR@
#define CUBLAS_VER_MINOR @MINOR@
#define CUBLAS_VER_PATCH @PATCH@
#define CUBLAS_VER_BUILD @BUILD@
#define CUBLAS_VERSION (CUBLAS_VER_MAJOR * 10000 + CUBLAS_VER_MINOR * 100 + CUBLAS_VER_PATCH)

typedef enum {
    CUBLAS_STATUS_SUCCESS = 0,
    CUBLAS_STATUS_NOT_INITIALIZED = 1,
    CUBLAS_STATUS_INVALID_VALUE = 7
} cublasStatus_t;

typedef struct cublasContext *cublasHandle_t;

#ifdef __cplusplus
extern "C" {
#endif
cublasStatus_t cublasCreate_v2(cublasHandle_t *handle);
cublasStatus_t cublasGetVersion_v2(cublasHandle_t handle, int *version);
cublasStatus_t cublasGetProperty(libraryPropertyType type, int *value);
#ifdef __cplusplus
}
#endif

#endif /* CUBLAS_API_H_ */
