// A city's live menu over Server-Sent Events, resumed exactly after every interruption.
//
// The browser's EventSource reconnects by itself after a dropped connection (a pod draining or restarting)
// and sends the id of the last event it saw as Last-Event-ID, so the API answers with exactly the missed
// changes. It gives up only when an answer is not a stream at all (e.g. a gateway's 502 while no pod is
// up); then a new EventSource resumes from the same position, passed as `?last_event_id=`.

const RETRY_MS = [500, 1000, 2000, 4000];

export function followMenu(city, handlers) {
  const { onSnapshot, onItem, onItemRemoved, onRestaurant, onState } = handlers;
  let source = null;
  let lastEventId = null;
  let failures = 0;
  let retryTimer = null;
  let closed = false;

  const remember = (event) => {
    if (event.lastEventId) lastEventId = event.lastEventId;
  };
  const on = (type, handler) =>
    source.addEventListener(type, (event) => {
      remember(event);
      handler(JSON.parse(event.data));
    });

  function open() {
    const base = `/v1/cities/${encodeURIComponent(city)}/menu/stream`;
    source = new EventSource(lastEventId ? `${base}?last_event_id=${encodeURIComponent(lastEventId)}` : base);
    source.addEventListener("open", () => {
      failures = 0;
      onState("live");
    });
    source.addEventListener("error", () => {
      if (closed) return;
      if (source.readyState === EventSource.CLOSED) {
        reopenLater();
      } else {
        onState("reconnecting");
      }
    });
    on("snapshot", onSnapshot);
    on("item", onItem);
    on("item_removed", onItemRemoved);
    on("restaurant", onRestaurant);
  }

  function reopenLater() {
    source.close();
    onState("reconnecting");
    const delay = RETRY_MS[Math.min(failures, RETRY_MS.length - 1)];
    failures += 1;
    retryTimer = setTimeout(open, delay);
  }

  onState("connecting");
  open();
  return {
    close() {
      closed = true;
      clearTimeout(retryTimer);
      source.close();
    },
    get position() {
      return lastEventId;
    },
  };
}
