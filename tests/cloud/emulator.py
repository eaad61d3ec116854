"""The GCS emulator of the cloud tests: `python -m tests.cloud.emulator start --port P --in-memory`
takes the options of `gcp-storage-emulator`.

gcp-storage-emulator does not implement the JSON API's objects.move
(`POST /storage/v1/b/BUCKET/o/SOURCE/moveTo/o/DESTINATION`), which gcsfs's `mv` calls first:
without it every atomic publication (transforms/publish.py) waits about 30 s on gcsfs's retries
of the 501 before falling back to copy + delete. This adds the route, as copy then delete.
"""

import sys
from http import HTTPStatus

from gcp_storage_emulator import server, settings
from gcp_storage_emulator.__main__ import main
from gcp_storage_emulator.exceptions import NotFound
from gcp_storage_emulator.handlers import objects

MOVE_ROUTE = (rf"^{settings.API_ENDPOINT}/b/(?P<bucket_name>[-.\w]+)/o/(?P<object_id>.*[^/]+)"
              r"/moveTo/o/(?P<dest_object_id>.*[^/]+)$")


def move(request, response, storage, *args, **kwargs):
    """objects.move within one bucket: the destination's resource, or 404."""
    bucket, source, destination = (request.params[k] for k in ("bucket_name", "object_id", "dest_object_id"))
    try:
        moved = objects._copy(request.base_url, storage, bucket, source, bucket, destination)
        storage.delete_file(bucket, source)
    except NotFound:
        response.status = HTTPStatus.NOT_FOUND
        return
    response.json(moved)


server.HANDLERS = ((MOVE_ROUTE, {server.POST: move}), *server.HANDLERS)

if __name__ == "__main__":
    main(sys.argv[1:])
