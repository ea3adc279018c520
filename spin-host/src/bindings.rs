//! Host-side bindings for the part of `fermyon:spin@2.0.0` this host implements
//! (wit/spin/host.wit). Every import is async (Redis does I/O) and may trap.

wasmtime::component::bindgen!({
    path: "wit/spin",
    world: "fermyon:spin/host",
    imports: { default: async | trappable },
    with: {
        "fermyon:spin/key-value.store": crate::state::KvHandle,
        "fermyon:spin/redis.connection": crate::state::RedisHandle,
    },
});
