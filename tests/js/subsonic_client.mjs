// A music app's journey through musicmap's OpenSubsonic server, made with the npm client
// `subsonic-api` (MIT): node subsonic_client.mjs URL PASSWORD SONG_ID [apiKey|password] [post]
// Prints one JSON object: each step's result (what the test checks) or its error.
import { createHash } from "node:crypto";
import { SubsonicAPI } from "subsonic-api";

const [url, secret, songId, mode = "password", how = "get"] = process.argv.slice(2);
const api = new SubsonicAPI({
  url,
  auth: mode === "apiKey" ? { apiKey: secret } : { username: "player", password: secret },
  post: how === "post",
});

const out = {};
async function step(name, fn) {
  try {
    out[name] = { ok: true, value: await fn() };
  } catch (e) {
    out[name] = { ok: false, error: String(e && e.message ? e.message : e) };
  }
}
async function bytes(response) {
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  const body = Buffer.from(await response.arrayBuffer());
  return { status: response.status, type: response.headers.get("content-type"), length: body.length,
           sha256: createHash("sha256").update(body).digest("hex") };
}

await step("ping", async () => (await api.ping()).status);
await step("extensions", async () => (await api.getOpenSubsonicExtensions()).openSubsonicExtensions.map((e) => e.name));
await step("song", async () => (await api.getSong({ id: songId })).song);
await step("stream", async () => bytes(await api.stream({ id: songId })));
await step("download", async () => bytes(await api.download({ id: songId })));
await step("similar", async () => (await api.getSimilarSongs2({ id: songId, count: 5 })).similarSongs2.song.map((s) => s.id));
await step("sonicSimilar", async () => {
  const r = await api.customJSON("getSonicSimilarTracks", { id: songId, count: 5 });
  return r["subsonic-response"] ? r["subsonic-response"].sonicMatch : r.sonicMatch;
});
await step("star", async () => (await api.star({ id: songId })).status);
await step("starred", async () => ((await api.getStarred2()).starred2.song || []).map((s) => s.id));
await step("scrobble", async () => (await api.scrobble({ id: songId, submission: true, time: Date.now() - 60000 })).status);
await step("playlists", async () => ((await api.getPlaylists()).playlists.playlist || []).map((p) => p.name));
// browsing, as a library view does
await step("artists", async () => (await api.getArtists()).artists.index.flatMap((i) => i.artist).map((a) => ({ id: a.id, name: a.name })));
await step("artist", async () => {
  const first = out.artists.ok ? out.artists.value[0] : null;
  if (!first) throw new Error("no artist to open");
  return (await api.getArtist({ id: first.id })).artist.album.map((a) => ({ id: a.id, name: a.name, songCount: a.songCount }));
});
await step("album", async () => {
  const first = out.artist.ok ? out.artist.value[0] : null;
  if (!first) throw new Error("no album to open");
  return (await api.getAlbum({ id: first.id })).album.song.map((s) => ({ id: s.id, title: s.title, coverArt: s.coverArt }));
});
await step("albumList", async () => ((await api.getAlbumList2({ type: "alphabeticalByName", size: 5 })).albumList2.album || []).map((a) => a.id));
await step("search", async () => {
  const r = (await api.search3({ query: out.song.ok ? out.song.value.title : "a" })).searchResult3;
  return { songs: (r.song || []).map((s) => s.id), albums: (r.album || []).length, artists: (r.artist || []).length };
});
await step("coverArt", async () => {
  const art = out.song.ok ? out.song.value.coverArt : null;
  if (!art) throw new Error("the song names no coverArt");
  return bytes(await api.getCoverArt({ id: art, size: 64 }));
});
console.log(JSON.stringify(out));
