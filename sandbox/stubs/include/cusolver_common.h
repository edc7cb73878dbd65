/* Sandbox stub of cusolver_common.h: only what the stub libcusolver exports. */
#ifndef CUSOLVER_COMMON_H_
#define CUSOLVER_COMMON_H_

#include "library_types.h"

#define CUSOLVER_VER_MAJOR @MAJOR@
#define CUSOLVER_VER_MINOR @MINOR@
#define CUSOLVER_VER_PATCH @PATCH@
#define CUSOLVER_VER_BUILD @BUILD@
#define CUSOLVER_VERSION (CUSOLVER_VER_MAJOR * 1000 + CUSOLVER_VER_MINOR * 100 + CUSOLVER_VER_PATCH)

typedef int cusolverStatus_t;

#ifdef __cplusplus
extern "C" {
#endif
cusolverStatus_t cusolverGetVersion(int *version);
cusolverStatus_t cusolverGetProperty(libraryPropertyType type, int *value);
#ifdef __cplusplus
}
#endif

#endif /* CUSOLVER_COMMON_H_ */
