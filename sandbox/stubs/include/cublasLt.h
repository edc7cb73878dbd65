/* Sandbox stub of cublasLt.h: only what the stub libcublasLt exports. */
#ifndef CUBLASLT_H_
#define CUBLASLT_H_

#include <stddef.h>
#include "cublas_api.h"

#ifdef __cplusplus
extern "C" {
#endif
size_t cublasLtGetVersion(void);
size_t cublasLtGetCudartVersion(void);
cublasStatus_t cublasLtGetProperty(libraryPropertyType type, int *value);
#ifdef __cplusplus
}
#endif

#endif /* CUBLASLT_H_ */
