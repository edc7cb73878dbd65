/* Sandbox stub of nvrtc.h: only what the stub libnvrtc exports. */
#ifndef __NVRTC_H__
#define __NVRTC_H__

typedef enum {
    NVRTC_SUCCESS = 0,
    NVRTC_ERROR_INVALID_INPUT = 3
} nvrtcResult;

#ifdef __cplusplus
extern "C" {
#endif
const char *nvrtcGetErrorString(nvrtcResult result);
nvrtcResult nvrtcVersion(int *major, int *minor);
#ifdef __cplusplus
}
#endif

#endif /* __NVRTC_H__ */
