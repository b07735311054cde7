#!/usr/bin/env python3
"""Tier-2 harness: a Kubernetes API over real HTTP (kmock's KubernetesEmulator) for the kube
backend's tests, with the test playing the controllers' part.

    emulator.py KUBECONFIG_OUT REQUEST_LOG [--ready-after S] [--end-watches-after N]

- Writes a kubeconfig pointing at the emulator to KUBECONFIG_OUT, then prints `ready URL`.
- Answers server-side apply (PATCH application/apply-patch+yaml) itself, which kmock lacks:
  create when the object is missing, merge when it exists.
- Plays the Deployment and EndpointSlice controllers: whenever a Deployment's spec.replicas
  changes, creates or deletes its pods (`<deployment>-<n>`, the template's labels); each new pod
  becomes Ready --ready-after seconds later, and the service's EndpointSlice then lists it.
- Answers Namespace verbs (apply, get, list, delete with its contents), which kmock reads
  as a scope, not an object.
- Filters list and watch by labelSelector, which kmock ignores.
- --end-watches-after N ends every watch stream after N events, as API servers end watches, so
  the client must restart them.
- Appends every request to REQUEST_LOG as one JSON line (method, path, query, content type,
  body) as it arrives. Runs until its standard input closes.
"""
import argparse
import asyncio
import json
import re
import sys

import kmock
from kmock._internal import references

PODS = references.resource(group='', version='v1', plural='pods')
DEPLOYMENTS = references.resource(group='apps', version='v1', plural='deployments')
SLICES = references.resource(group='discovery.k8s.io', version='v1', plural='endpointslices')


NAMESPACE_PATH = re.compile(r'^/api/v1/namespaces(?:/([^/]+))?$')


def selected(request, obj):
    """Whether `obj` matches the request's labelSelector (`k=v` and `k` terms), which kmock
    does not filter by."""
    return selected_params(request.params, obj)


def selected_params(params, obj):
    labels = obj.get('metadata', {}).get('labels') or {}
    for term in filter(None, params.get('labelSelector', '').split(',')):
        k, eq, v = term.partition('=')
        if k not in labels or (eq and labels[k] != v):
            return False
    return True


class Harness(kmock.KubernetesEmulator):
    def __init__(self, log, ready_after, end_watches_after):
        super().__init__()
        self.log = log
        self.ready_after = ready_after
        self.end_watches_after = end_watches_after
        self.next_ip = 1
        self.namespaces = {}

    async def _handle(self, request):
        ctype = request.headers.get('Content-Type', '')
        if (request.resource is not None and request.name is not None
                and request.url.path.split('/')[-1] == request.name
                and ctype.startswith('application/apply-patch')):
            key = (request.resource, request.namespace, request.name)
            if key not in self.objects or self.objects[key].deleted:
                obj = dict(request.data)
                obj.setdefault('metadata', {})
                if request.namespace:
                    obj['metadata']['namespace'] = request.namespace
                async with self._lock:
                    if key in self.objects:
                        self.objects[key].create(obj)
                    else:
                        self.objects[key] = obj
                    raw = self.objects[key].raw
                    await self._buses[request.resource].put({'type': 'ADDED', 'object': raw})
                await self.reconcile(request)
                return await self._render_payload(raw)
        response = await super()._handle(request)
        await self.reconcile(request)
        return response

    async def __call__(self, raw):
        body = await raw.read()
        try:
            data = json.loads(body) if body else None
        except ValueError:
            data = None
        self.log.write(json.dumps({
            'method': raw.method, 'path': raw.path, 'query': dict(raw.query),
            'content_type': raw.headers.get('Content-Type', ''), 'body': data,
        }) + '\n')
        self.log.flush()
        m = NAMESPACE_PATH.match(raw.path)
        if m:
            return self.namespace_verb(raw, m.group(1), data)
        return await super().__call__(raw)

    def namespace_verb(self, raw, name, data):
        """Namespaces, which kmock reads as a scope rather than objects: apply, get, list by
        label, delete."""
        import aiohttp.web
        status = lambda code, reason: aiohttp.web.json_response(
            {'apiVersion': 'v1', 'kind': 'Status', 'status': 'Failure', 'code': code,
             'reason': reason, 'message': f'namespaces {name!r} {reason}', 'metadata': {}},
            status=code)
        if name is None and raw.method == 'GET':
            items = [o for o in self.namespaces.values()
                     if selected_params(raw.query, o)]
            return aiohttp.web.json_response({'apiVersion': 'v1', 'kind': 'NamespaceList',
                                              'metadata': {'resourceVersion': '1'}, 'items': items})
        if name is not None and raw.method == 'PATCH' and \
                raw.headers.get('Content-Type', '').startswith('application/apply-patch'):
            obj = self.namespaces.setdefault(name, {})
            obj.update(data)
            return aiohttp.web.json_response(obj)
        if name is not None and raw.method == 'GET':
            return aiohttp.web.json_response(self.namespaces[name]) if name in self.namespaces \
                else status(404, 'NotFound')
        if name is not None and raw.method == 'DELETE':
            if name not in self.namespaces:
                return status(404, 'NotFound')
            obj = self.namespaces.pop(name)
            # The namespace controller's part: everything in it goes with it.
            for key in [k for k, o in self.objects.items() if k[1] == name and not o.deleted]:
                self.objects[key].delete()
            return aiohttp.web.json_response(obj)
        return status(405, 'MethodNotAllowed')

    async def _render_payload(self, raw):
        import aiohttp.web
        return aiohttp.web.json_response(raw)

    async def _serve_list(self, request):
        listing = await super()._serve_list(request)
        listing['items'] = [o for o in listing['items'] if selected(request, o)]
        return listing

    async def _serve_watch(self, request):
        n = 0
        async for item in super()._serve_watch(request):
            if item != b'' and not selected(request, item.get('object', {})):
                continue
            yield item
            if item != b'':
                n += 1
                if self.end_watches_after and n >= self.end_watches_after:
                    return

    async def reconcile(self, request):
        """The Deployment controller's part, for the Deployment the request touched."""
        if request.resource != DEPLOYMENTS or request.name is None:
            return
        key = (DEPLOYMENTS, request.namespace, request.name)
        if key not in self.objects or self.objects[key].deleted:
            return
        dep = self.objects[key].raw
        want = int(dep.get('spec', {}).get('replicas', 1))
        labels = dep['spec']['template']['metadata']['labels']
        prefix = request.name + '-'
        pods = sorted(
            (name for (res, ns, name), obj in self.objects.items()
             if res == PODS and ns == request.namespace and name.startswith(prefix)
             and not obj.deleted and obj.raw['metadata'].get('labels') == labels),
            key=lambda n: int(n.rsplit('-', 1)[1]))
        async with self._lock:
            for name in pods[want:][::-1]:
                k = (PODS, request.namespace, name)
                raw = self.objects[k].raw
                self.objects[k].delete()
                await self._buses[PODS].put({'type': 'DELETED', 'object': raw})
            used = {int(n.rsplit('-', 1)[1]) for n in pods}
            i = 0
            for _ in range(want - len(pods)):
                while i in used:
                    i += 1
                used.add(i)
                name = f'{prefix}{i}'
                pod = {'apiVersion': 'v1', 'kind': 'Pod',
                       'metadata': {'name': name, 'namespace': request.namespace,
                                    'labels': dict(labels)},
                       'status': {'podIP': f'10.0.0.{self.next_ip}',
                                  'conditions': [{'type': 'Ready', 'status': 'False'}]}}
                self.next_ip += 1
                self.objects[(PODS, request.namespace, name)] = pod
                await self._buses[PODS].put({'type': 'ADDED', 'object': pod})
                asyncio.get_running_loop().call_later(
                    self.ready_after, lambda k=(PODS, request.namespace, name):
                    asyncio.ensure_future(self.mark_ready(k)))

    async def mark_ready(self, key):
        async with self._lock:
            if key not in self.objects or self.objects[key].deleted:
                return
            self.objects[key].patch({'status': {'conditions': [{'type': 'Ready', 'status': 'True'}]}})
            pod = self.objects[key].raw
            await self._buses[PODS].put({'type': 'MODIFIED', 'object': pod})
            # The EndpointSlice controller: the service's slice lists its ready pods.
            ns = key[1]
            svc = pod['metadata']['labels'].get('sdnbed.service')
            ready = [o.raw for (r, n, _), o in self.objects.items()
                     if r == PODS and n == ns and not o.deleted
                     and o.raw['metadata']['labels'].get('sdnbed.service') == svc
                     and any(c.get('status') == 'True' for c in o.raw['status']['conditions'])]
            slice_ = {'apiVersion': 'discovery.k8s.io/v1', 'kind': 'EndpointSlice',
                      'metadata': {'name': f'{svc}-slice', 'namespace': ns,
                                   'labels': {'kubernetes.io/service-name': svc}},
                      'addressType': 'IPv4',
                      'endpoints': [{'addresses': [p['status']['podIP']],
                                     'conditions': {'ready': True},
                                     'targetRef': {'kind': 'Pod', 'name': p['metadata']['name']}}
                                    for p in ready]}
            skey = (SLICES, ns, slice_['metadata']['name'])
            kind = 'MODIFIED' if skey in self.objects and not self.objects[skey].deleted else 'ADDED'
            if kind == 'MODIFIED':
                self.objects[skey].patch({'endpoints': slice_['endpoints']})
            elif skey in self.objects:
                self.objects[skey].create(slice_)
            else:
                self.objects[skey] = slice_
            await self._buses[SLICES].put({'type': kind, 'object': self.objects[skey].raw})


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('kubeconfig')
    ap.add_argument('log')
    ap.add_argument('--ready-after', type=float, default=0.5)
    ap.add_argument('--end-watches-after', type=int, default=0)
    a = ap.parse_args()
    with open(a.log, 'a') as log:
        async with Harness(log, a.ready_after, a.end_watches_after) as k, kmock.Server(k) as srv:
            url = f'http://{srv.host}:{srv.port}'
            with open(a.kubeconfig, 'w') as f:
                json.dump({'apiVersion': 'v1', 'kind': 'Config', 'current-context': 'kmock',
                           'clusters': [{'name': 'kmock', 'cluster': {'server': url}}],
                           'users': [{'name': 'kmock', 'user': {}}],
                           'contexts': [{'name': 'kmock',
                                         'context': {'cluster': 'kmock', 'user': 'kmock'}}]}, f)
            print(f'ready {url}', flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


if __name__ == '__main__':
    asyncio.run(main())
