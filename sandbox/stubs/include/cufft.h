/* Sandbox stub of cufft.h: only what the stub libcufft exports. */
#ifndef _CUFFT_H_
#define _CUFFT_H_

#include "library_types.h"

#define CUFFT_VER_MAJOR @MAJOR@
#define CUFFT_VER_MINOR @MINOR@
#define CUFFT_VER_PATCH @PATCH@
#define CUFFT_VER_BUILD @BUILD@
#define CUFFT_VERSION (CUFFT_VER_MAJOR * 1000 + CUFFT_VER_MINOR * 100 + CUFFT_VER_PATCH)

typedef int cufftResult;

#ifdef __cplusplus
extern "C" {
#endif
cufftResult cufftGetVersion(int *version);
cufftResult cufftGetProperty(libraryPropertyType type, int *value);
#ifdef __cplusplus
}
#endif

#endif /* _CUFFT_H_ */
