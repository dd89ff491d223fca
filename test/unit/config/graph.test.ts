import { describe, expect, it } from 'vitest';
import { GOOGLE, MICROSOFT, errorOf, load, yaml } from './helpers.js';

describe('Graph sending keys on a connection', () => {
  it('a Microsoft connection without send keeps SMTP and has no Graph settings', () => {
    const conn = load(yaml('connections:', ...MICROSOFT))
      .connections.values()
      .next().value;
    expect(conn?.send).toBeUndefined();
    expect(conn?.graph).toBeUndefined();
  });

  it('send: graph and auto take the Graph URL and scope from the cloud', () => {
    const config = load(
      yaml(
        'connections:',
        '  - name: global',
        '    provider: microsoft',
        '    clientId: x',
        '    send: graph',
        '  - name: us',
        '    provider: azure',
        '    clientId: x',
        '    tenantId: contoso.us',
        '    cloud: usgov',
        '    send: auto',
        '    saveToSentItems: false',
        '  - name: cn',
        '    provider: microsoft',
        '    clientId: x',
        '    tenantId: contoso.cn',
        '    cloud: china',
        '    grant: client_credentials',
        '    clientSecret: s',
        '    send: graph',
      ),
    );
    expect(config.connections.get('global')).toMatchObject({
      send: 'graph',
      graph: {
        url: 'https://graph.microsoft.com/v1.0',
        scopes: ['https://graph.microsoft.com/Mail.Send'],
        saveToSentItems: true,
      },
    });
    expect(config.connections.get('us')).toMatchObject({
      send: 'auto',
      graph: {
        url: 'https://graph.microsoft.us/v1.0',
        scopes: ['https://graph.microsoft.us/Mail.Send'],
        saveToSentItems: false,
      },
    });
    // App-only: the application permission comes with the resource's .default scope.
    expect(config.connections.get('cn')?.graph).toMatchObject({
      url: 'https://microsoftgraph.chinacloudapi.cn/v1.0',
      scopes: ['https://microsoftgraph.chinacloudapi.cn/.default'],
    });
  });

  it('graphUrl and graphScopes override the preset; http only on loopback', () => {
    const config = load(
      yaml(
        'connections:',
        ...MICROSOFT,
        '    send: graph',
        '    graphUrl: http://127.0.0.1:9/v1.0/',
        '    graphScopes: [https://graph.microsoft.com/Mail.Send.Shared]',
      ),
    );
    expect(config.connections.values().next().value?.graph).toEqual({
      url: 'http://127.0.0.1:9/v1.0',
      scopes: ['https://graph.microsoft.com/Mail.Send.Shared'],
      saveToSentItems: true,
    });
    expect(
      errorOf(
        yaml('connections:', ...MICROSOFT, '    send: graph', '    graphUrl: http://graph.example/v1.0'),
      ),
    ).toContain('connections[0].graphUrl: http:// is not allowed here.');
  });

  it('refuses Graph on Google, auto on custom, custom without URL and scopes, Graph keys without a Graph mode', () => {
    expect(errorOf(yaml('connections:', ...GOOGLE, '    send: graph'))).toContain(
      'connections[0].send: send: graph sends through Microsoft Graph, which Google accounts do not have.',
    );
    const custom = [
      '  - name: c',
      '    provider: custom',
      '    clientId: x',
      '    authorizeUrl: https://idp.example/authorize',
      '    tokenUrl: https://idp.example/token',
      '    scopes: [mail]',
      '    smtp: { host: smtp.example, port: 465 }',
    ];
    const both = errorOf(yaml('connections:', ...custom, '    send: auto'));
    expect(both).toContain('connections[0].send: send: auto reacts to Exchange Online refusing SMTP AUTH');
    expect(both).toContain('connections[0].graphUrl: a custom connection with send: graph needs graphUrl');
    expect(both).toContain(
      'connections[0].graphScopes: a custom connection with send: graph needs graphScopes',
    );
    expect(
      errorOf(yaml('connections:', ...MICROSOFT, '    graphUrl: https://graph.microsoft.com/v1.0')),
    ).toContain(
      'connections[0].graphUrl: graphUrl is only used when send is graph or auto. Remove graphUrl, or set send: graph (or auto).',
    );
    const ok = load(
      yaml(
        'connections:',
        ...custom,
        '    send: graph',
        '    graphUrl: https://graph.example/v1.0',
        '    graphScopes: [graph.send]',
      ),
    );
    expect(ok.connections.get('c')?.graph?.scopes).toEqual(['graph.send']);
  });
});
