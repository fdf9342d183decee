/**
 * Loaded into every Node process under `vallignus run` (NODE_OPTIONS=--import). Node 20's fetch
 * and its http/https modules ignore HTTP_PROXY; this routes both through the Vallignus proxy so
 * an agent needs no code change. It is a convenience, not the wall: `--isolate` is the wall.
 */
/* eslint-disable @typescript-eslint/no-unsafe-class-instance-assignment --
   HttpProxyAgent and HttpsProxyAgent subclass http.Agent through agent-base; the rule cannot see that. */
import http from "node:http";
import https from "node:https";

import { HttpProxyAgent } from "http-proxy-agent";
import { HttpsProxyAgent } from "https-proxy-agent";
import { ProxyAgent, setGlobalDispatcher } from "undici";

const proxy = process.env["VALLIGNUS_PROXY_URL"];
if (proxy !== undefined && proxy !== "") {
  // proxyTunnel false: plain http goes as an absolute-form request, so a denial arrives as the
  // 403 and its JSON body; https still tunnels with CONNECT.
  setGlobalDispatcher(new ProxyAgent({ uri: proxy, proxyTunnel: false }));
  http.globalAgent = new HttpProxyAgent(proxy, { keepAlive: true });
  https.globalAgent = new HttpsProxyAgent(proxy, { keepAlive: true });
}
