/* macrohard.h must compile as plain C (C11, -Wpedantic) and be usable from C. */
#include <macrohard/macrohard.h>
#include <stdio.h>
#include <string.h>

int main(void) {
  mh_client_options* options = mh_client_options_new();
  mh_error* error = NULL;
  mh_client* client = NULL;
  int failures = 0;

  if (!mh_api_compatible(MH_API_VERSION_MAJOR, MH_API_VERSION_MINOR)) {
    fprintf(stderr, "library API %u.%u is not compatible\n", mh_api_version() >> 16,
            mh_api_version() & 0xffffu);
    return 1;
  }
  if (mh_api_compatible(MH_API_VERSION_MAJOR + 1, 0)) failures++;

  /* No base URL yet: creating a client is refused with a clear error. */
  error = mh_client_new(options, &client);
  if (error == NULL || mh_error_code(error) != MH_ERR_INVALID_ARGUMENT || client != NULL)
    failures++;
  mh_error_delete(error);

  error = mh_client_options_set_base_url(options, "not a url");
  if (error == NULL || strstr(mh_error_message(error), "not a url") == NULL) failures++;
  mh_error_delete(error);

  error = mh_client_options_set_base_url(options, "http://127.0.0.1:1");
  if (error != NULL) failures++;
  error = mh_client_options_set_max_retries(options, 0);
  if (error != NULL) failures++;
  error = mh_client_new(options, &client);
  if (error != NULL || client == NULL) failures++;
  mh_client_options_delete(options);

  /* Nothing listens on port 1: the call fails with UNAVAILABLE, not a crash. */
  mh_server_info* info = NULL;
  error = mh_client_server_info(client, &info);
  if (error == NULL || mh_error_code(error) != MH_ERR_UNAVAILABLE || info != NULL) failures++;
  if (error != NULL && strcmp(mh_code_name(mh_error_code(error)), "unavailable") != 0) failures++;
  mh_error_delete(error);

  error = mh_client_server_info(NULL, &info);
  if (error == NULL || mh_error_code(error) != MH_ERR_INVALID_ARGUMENT) failures++;
  mh_error_delete(error);

  mh_client_delete(client);
  mh_error_delete(NULL);
  mh_free(NULL);
  printf("%s: %d failures\n", mh_library_version(), failures);
  return failures == 0 ? 0 : 1;
}
