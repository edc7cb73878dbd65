/* Sandbox stub of curand.h: only what the stub libcurand exports. */
#ifndef CURAND_H_
#define CURAND_H_

#include "library_types.h"

#define CURAND_VER_MAJOR @MAJOR@
#define CURAND_VER_MINOR @MINOR@
#define CURAND_VER_PATCH @PATCH@
#define CURAND_VER_BUILD @BUILD@
#define CURAND_VERSION (CURAND_VER_MAJOR * 1000 + CURAND_VER_MINOR * 100 + CURAND_VER_PATCH)

typedef int curandStatus_t;

#ifdef __cplusplus
extern "C" {
#endif
curandStatus_t curandGetVersion(int *version);
curandStatus_t curandGetProperty(libraryPropertyType type, int *value);
#ifdef __cplusplus
}
#endif

#endif /* CURAND_H_ */
