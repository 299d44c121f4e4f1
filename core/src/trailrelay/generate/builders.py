"""Builders of the API-specific parts of background records, one function per call shape.

Shapes follow real CloudTrail records: read-only calls log no responseElements, EC2 mutations
echo their requestId, S3 adds additionalEventData and a bucket resource, STS returns
credentials, service calls carry invokedBy.
"""

from __future__ import annotations

import base64
from typing import Any

from trailrelay.generate.events import Call, Env
from trailrelay.generate.ids import ALNUM, expiration, hex_token, token, uuid4
from trailrelay.generate.world import Bucket


def _filters(name: str, *values: str) -> dict[str, Any]:
    return {"items": [{"name": name, "valueSet": {"items": [{"value": v} for v in values]}}]}


def static(request: dict[str, Any] | None = None) -> Any:
    """A builder that always returns the same request parameters."""
    call = Call(request)
    return lambda _e: call


# -- EC2 -------------------------------------------------------------------------------------
def describe_instances(e: Env) -> Call:
    """EC2 DescribeInstances: by id, by state filter, or everything."""
    r = e.rng.random()
    if r < 0.4:
        return Call({"instancesSet": {"items": [{"instanceId": e.pick(e.res.instances)}]}, "filterSet": {}})
    if r < 0.75:
        return Call({"instancesSet": {}, "filterSet": _filters("instance-state-name", "running", "pending")})
    return Call({"maxResults": 1000, "instancesSet": {}, "filterSet": {}})


def describe_sgs(e: Env) -> Call:
    """EC2 DescribeSecurityGroups by id or by VPC."""
    if e.rng.random() < 0.5:
        ids = {"items": [{"groupId": e.pick(e.res.security_groups)}]}
        return Call({"securityGroupSet": {}, "securityGroupIdSet": ids, "filterSet": {}})
    vpc = _filters("vpc-id", e.pick(e.res.vpcs))
    return Call({"securityGroupSet": {}, "securityGroupIdSet": {}, "filterSet": vpc})


def describe_subnets(e: Env) -> Call:
    """EC2 DescribeSubnets of one VPC."""
    return Call({"subnetSet": {}, "filterSet": _filters("vpc-id", e.pick(e.res.vpcs))})


def describe_volumes(e: Env) -> Call:
    """EC2 DescribeVolumes by id or paginated."""
    if e.rng.random() < 0.5:
        return Call({"volumeSet": {"items": [{"volumeId": e.pick(e.res.volumes)}]}, "filterSet": {}})
    return Call({"volumeSet": {}, "filterSet": {}, "maxResults": 500})


def describe_enis(e: Env) -> Call:
    """EC2 DescribeNetworkInterfaces of one VPC."""
    return Call({"networkInterfaceIdSet": {}, "filterSet": _filters("vpc-id", e.pick(e.res.vpcs))})


def describe_images(e: Env) -> Call:
    """EC2 DescribeImages of one AMI."""
    images = {"items": [{"imageId": e.pick(e.res.amis)}]}
    return Call({"executableBySet": {}, "imagesSet": images, "ownersSet": {}, "filterSet": {}})


def describe_snapshots(_e: Env) -> Call:
    """EC2 DescribeSnapshots of the account's own snapshots."""
    owners = {"items": [{"owner": "self"}]}
    return Call({"snapshotSet": {}, "ownersSet": owners, "sharedUsersSet": {}, "filterSet": {}})


def describe_flow_logs(e: Env) -> Call:
    """EC2 DescribeFlowLogs of one VPC (query-protocol request shape)."""
    flt = {"Value": {"tag": 1, "content": e.pick(e.res.vpcs)}, "tag": 1, "Name": "resource-id"}
    return Call({"DescribeFlowLogsRequest": {"Filter": flt}})


def create_tags(e: Env) -> Call:
    """EC2 CreateTags stamping a deploy time on an instance."""
    req = {
        "resourcesSet": {"items": [{"resourceId": e.pick(e.res.instances)}]},
        "tagSet": {"items": [{"key": "last-deploy", "value": e.when()}]},
    }
    return Call(req, {"requestId": e.rid, "_return": True})


def start_stop(state: str) -> Any:
    """EC2 StartInstances (``pending``) or StopInstances (``stopping``)."""
    codes = {"pending": (0, 80, "stopped"), "stopping": (64, 16, "running")}
    cur, prev, prev_name = codes[state]

    def build(e: Env) -> Call:
        instance = e.pick(e.res.instances)
        req: dict[str, Any] = {"instancesSet": {"items": [{"instanceId": instance}]}}
        if state == "stopping":
            req["force"] = False
        item = {
            "instanceId": instance,
            "currentState": {"code": cur, "name": state},
            "previousState": {"code": prev, "name": prev_name},
        }
        return Call(req, {"requestId": e.rid, "instancesSet": {"items": [item]}})

    return build


def run_instances(e: Env) -> Call:
    """EC2 RunInstances of one instance, with the response CloudTrail logs."""
    rng = e.rng
    ami, subnet, sg = e.pick(e.res.amis), e.pick(e.res.subnets), e.pick(e.res.security_groups)
    ip = f"10.0.{rng.randrange(1, 64)}.{rng.randrange(4, 250)}"
    instance = f"i-{hex_token(rng, 17)}"
    itype = e.pick(("t3.medium", "m7g.large", "c6i.xlarge"))
    token_ = uuid4(rng)
    req = {
        "instancesSet": {"items": [{"imageId": ami, "minCount": 1, "maxCount": 1}]},
        "instanceType": itype,
        "blockDeviceMapping": {},
        "monitoring": {"enabled": False},
        "subnetId": subnet,
        "disableApiTermination": False,
        "disableApiStop": False,
        "clientToken": token_,
    }
    item = {
        "instanceId": instance,
        "imageId": ami,
        "instanceState": {"code": 0, "name": "pending"},
        "privateDnsName": f"ip-{ip.replace('.', '-')}.{e.region}.compute.internal",
        "amiLaunchIndex": 0,
        "productCodes": {},
        "instanceType": itype,
        "launchTime": (e.day.toordinal() - 719163) * 86_400_000 + e.ts * 1000,
        "placement": {"availabilityZone": f"{e.region}a", "tenancy": "default"},
        "monitoring": {"state": "disabled"},
        "subnetId": subnet,
        "privateIpAddress": ip,
        "sourceDestCheck": True,
        "groupSet": {"items": [{"groupId": sg, "groupName": "default"}]},
        "architecture": "arm64" if itype.startswith("m7g") else "x86_64",
        "rootDeviceType": "ebs",
        "rootDeviceName": "/dev/xvda",
        "blockDeviceMapping": {},
        "virtualizationType": "hvm",
        "hypervisor": "xen",
        "clientToken": token_,
        "ebsOptimized": False,
        "enaSupport": True,
    }
    resp = {
        "requestId": e.rid,
        "reservationId": f"r-{hex_token(rng, 17)}",
        "ownerId": e.acct.id,
        "groupSet": {},
        "instancesSet": {"items": [item]},
    }
    return Call(req, resp)


def authorize_ingress(e: Env) -> Call:
    """EC2 AuthorizeSecurityGroupIngress opening 443 to the VPC."""
    sg = e.pick(e.res.security_groups)
    perm = {
        "ipProtocol": "tcp",
        "fromPort": 443,
        "toPort": 443,
        "groups": {},
        "ipRanges": {"items": [{"cidrIp": "10.0.0.0/16"}]},
        "ipv6Ranges": {},
        "prefixListIds": {},
    }
    rule = {
        "groupOwnerId": e.acct.id,
        "groupId": sg,
        "securityGroupRuleId": f"sgr-{hex_token(e.rng, 17)}",
        "isEgress": False,
        "ipProtocol": "tcp",
        "fromPort": 443,
        "toPort": 443,
        "cidrIpv4": "10.0.0.0/16",
    }
    req = {"groupId": sg, "ipPermissions": {"items": [perm]}}
    return Call(req, {"requestId": e.rid, "_return": True, "securityGroupRuleSet": {"items": [rule]}})


# -- S3 --------------------------------------------------------------------------------------
def object_key(e: Env, b: Bucket) -> str:
    """Make up a plausible object key for the bucket's purpose."""
    rng = e.rng
    d = e.day
    if b.kind == "app-assets":
        return (
            f"uploads/{d:%Y/%m/%d}/{uuid4(rng)}.jpg"
            if rng.random() < 0.5
            else f"static/img/{hex_token(rng, 12)}.webp"
        )
    if b.kind == "data-lake":
        part = f"part-{rng.randrange(10**4):05d}-{uuid4(rng)}.snappy.parquet"
        return f"raw/events/dt={d.isoformat()}/hour={e.ts // 3600:02d}/{part}"
    if b.kind == "terraform-state":
        return f"env/{e.acct.alias}/{e.pick(('network', 'iam', 'compute', 'data'))}.tfstate"
    if b.kind == "backups":
        return f"rds/{d.isoformat()}/orders-db-{rng.randrange(24):02d}00.sql.gz"
    return f"daily/{d.isoformat()}/cost-report-{rng.randrange(1, 9)}.csv.gz"


def _object_call(e: Env, out: int = 0, inb: int = 0) -> tuple[Bucket, str, Call]:
    b = e.bucket()
    key = object_key(e, b)
    host = f"{b.name}.s3.{b.region}.amazonaws.com"
    res = [
        {"type": "AWS::S3::Object", "ARN": f"arn:aws:s3:::{b.name}/{key}"},
        {"accountId": e.acct.id, "type": "AWS::S3::Bucket", "ARN": f"arn:aws:s3:::{b.name}"},
    ]
    req = {"bucketName": b.name, "Host": host, "key": key}
    return b, key, Call(req, None, res, e.s3_extra(out=out, inb=inb), host)


def get_object(e: Env) -> Call:
    """S3 GetObject data event."""
    return _object_call(e, out=e.rng.randrange(200, 4_000_000))[2]


def head_object(e: Env) -> Call:
    """S3 HeadObject data event."""
    return _object_call(e)[2]


def put_object(e: Env) -> Call:
    """S3 PutObject data event."""
    call = _object_call(e, inb=e.rng.randrange(200, 4_000_000))[2]
    return call._replace(response={"x-amz-server-side-encryption": "AES256"})


def list_objects(e: Env) -> Call:
    """S3 ListObjects (V2) data event."""
    b = e.bucket()
    call = e.s3_bucket_call(b, "", out=e.rng.randrange(400, 40_000))
    assert call.request is not None
    prefix = {"data-lake": "raw/events/", "backups": "rds/", "reports": "daily/"}.get(b.kind, "")
    req = {**call.request, "list-type": "2", "prefix": prefix, "delimiter": "/", "encoding-type": "url"}
    return call._replace(request=req)


def bucket_read(sub: str) -> Any:
    """S3 bucket configuration read on sub-resource ``sub`` (``policy``, ``acl``...)."""

    def build(e: Env) -> Call:
        return e.s3_bucket_call(e.bucket(), sub, out=e.rng.randrange(100, 1200))

    return build


def list_buckets(e: Env) -> Call:
    """S3 ListBuckets."""
    return Call(
        {"Host": "s3.amazonaws.com"},
        None,
        None,
        e.s3_extra(out=e.rng.randrange(800, 9000)),
        "s3.amazonaws.com",
    )


# -- IAM / STS / Organizations / sign-in -------------------------------------------------------
def role_name(e: Env) -> str:
    """A role of the account."""
    return e.pick(sorted(e.acct.roles))


def user_name(e: Env) -> str:
    """An IAM user of the account."""
    return e.pick([a.name for a in e.acct.actors if a.kind in ("user", "bot")])


def by(key: str, pick: Any) -> Any:
    """A builder whose only request parameter is ``key``, chosen by ``pick``."""
    return lambda e: Call({key: pick(e)})


_MANAGED = ("ReadOnlyAccess", "AmazonS3ReadOnlyAccess", "AWSLambdaBasicExecutionRole", "SecurityAudit")


def get_policy(e: Env) -> Call:
    """IAM GetPolicy of an AWS managed policy."""
    return Call({"policyArn": f"arn:aws:iam::aws:policy/{e.pick(_MANAGED)}"})


def assume_role(e: Env) -> Call:
    """STS AssumeRole by a person, CI, or a service (Lambda, EC2, ECS) for its role."""
    rng = e.rng
    actor = e.actor
    if actor.kind == "service":
        if actor.service == "lambda.amazonaws.com" and "lambda" in e.by_kind:
            target = e.pick_actor("lambda")
        elif actor.service == "ec2.amazonaws.com" and "workload" in e.by_kind:
            target = e.pick_actor("workload")
        else:
            target = None
        if target is not None:
            role_arn, session = target.role_arn, target.name
        else:
            role_arn, session = f"arn:aws:iam::{e.acct.id}:role/ecs-task-role", hex_token(rng, 32)
    else:
        role = e.pick(("OrganizationAccountAccessRole", "ReadOnlyAuditRole", "terraform-execution"))
        role_arn = e.acct.roles[role][0]
        session = f"{actor.name.split('@')[0]}-{e.ts}" if actor.kind in ("user", "sso") else "GitHubActions"
    role_name = role_arn.rsplit("/", 1)[1]
    aroa = e.acct.roles.get(role_name, (role_arn, "AROA" + e.acct.key_infix + "ECSTASKRL"))[1]
    creds = {
        "accessKeyId": "ASIA" + e.acct.key_infix + token(rng, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 8),
        "sessionToken": "IQoJb3JpZ2luX2Vj" + base64.b64encode(rng.randbytes(300)).decode(),
        "expiration": expiration(e.day, e.ts + 3600),
    }
    resp = {
        "credentials": creds,
        "assumedRoleUser": {
            "assumedRoleId": f"{aroa}:{session}",
            "arn": f"arn:aws:sts::{e.acct.id}:assumed-role/{role_name}/{session}",
        },
    }
    req = {"roleArn": role_arn, "roleSessionName": session, "durationSeconds": 3600}
    res = [{"accountId": e.acct.id, "type": "AWS::IAM::Role", "ARN": role_arn}]
    return Call(req, resp, res)


def console_login(e: Env) -> Call:
    """Sign-in ConsoleLogin with MFA, now and then a failed password."""
    actor = e.actor
    region = e.region
    state = hex_token(e.rng, 16)
    extra: dict[str, Any] = {
        "LoginTo": f"https://console.aws.amazon.com/console/home?hashArgs=%23&isauthcode=true&state=hashArgsFromTB_{region}_{state}",
        "MobileVersion": "No",
    }
    mfa = "root-account-mfa-device" if actor.kind == "root" else actor.name
    extra["MFAIdentifier"] = f"arn:aws:iam::{e.acct.id}:mfa/{mfa}"
    extra["MFAUsed"] = "Yes"
    host = f"{region}.signin.aws.amazon.com"
    if actor.kind == "user" and e.rng.random() < 0.04:  # a mistyped password
        fail = {"LoginTo": extra["LoginTo"], "MobileVersion": "No", "MFAUsed": "No"}
        return Call(None, {"ConsoleLogin": "Failure"}, None, fail, host, error=("", "Failed authentication"))
    return Call(None, {"ConsoleLogin": "Success"}, None, extra, host)


# -- KMS / Secrets / SSM -----------------------------------------------------------------------
def decrypt(e: Env) -> Call:
    """KMS Decrypt, often by Secrets Manager, SSM or S3 on the caller's behalf."""
    rng = e.rng
    key = e.key_arn()
    res = [{"accountId": e.acct.id, "type": "AWS::KMS::Key", "ARN": key}]
    r = rng.random()
    if r < 0.3:
        ctx = {"SecretARN": e.pick(e.res.secrets), "SecretVersionId": uuid4(rng)}
        via: str | None = "secretsmanager.amazonaws.com"
    elif r < 0.55:
        ctx = {"PARAMETER_ARN": f"arn:aws:ssm:{e.region}:{e.acct.id}:parameter{e.pick(e.res.parameters)}"}
        via = "ssm.amazonaws.com"
    elif r < 0.75:
        b = e.bucket()
        ctx = {"aws:s3:arn": f"arn:aws:s3:::{b.name}/{object_key(e, b)}"}
        via = "s3.amazonaws.com"
    else:
        fn = e.pick(e.res.functions)
        ctx = {"aws:lambda:FunctionArn": f"arn:aws:lambda:{e.region}:{e.acct.id}:function:{fn}"}
        via = None
    return Call({"encryptionAlgorithm": "SYMMETRIC_DEFAULT", "encryptionContext": ctx}, None, res, via=via)


def generate_data_key(e: Env) -> Call:
    """KMS GenerateDataKey by CloudTrail encrypting a log object of the org trail."""
    org = e.org
    mgmt = org.accounts[0].id
    acct = org.accounts[int(e.rng.random() * len(org.accounts))].id
    stamp = f"{e.day:%Y%m%d}T{(e.ts // 300) * 5 // 60:02d}{(e.ts // 300) * 5 % 60:02d}Z"
    obj = (
        f"{org.bucket}/AWSLogs/{org.id}/{acct}/CloudTrail/{e.region}/{e.day:%Y/%m/%d}/"
        f"{acct}_CloudTrail_{e.region}_{stamp}_{token(e.rng, ALNUM, 16)}.json.gz"
    )
    key = e.key_arn()
    ctx = {
        "aws:cloudtrail:arn": f"arn:aws:cloudtrail:{org.home_region}:{mgmt}:trail/{org.trail_name}",
        "aws:s3:arn": f"arn:aws:s3:::{obj}",
    }
    res = [{"accountId": e.acct.id, "type": "AWS::KMS::Key", "ARN": key}]
    return Call({"keyId": key, "encryptionContext": ctx, "keySpec": "AES_256"}, None, res)


def key_req(field: str) -> Any:
    """A KMS call whose request names a key in ``field``."""

    def build(e: Env) -> Call:
        key = e.key_arn()
        return Call({field: key}, None, [{"accountId": e.acct.id, "type": "AWS::KMS::Key", "ARN": key}])

    return build


def rotate_key(e: Env) -> Call:
    """KMS RotateKey service event."""
    key = e.key_arn()
    res = [{"accountId": e.acct.id, "type": "AWS::KMS::Key", "ARN": key}]
    details = {"keyId": key.rsplit("/", 1)[1], "rotationType": "AUTOMATIC"}
    return Call(None, None, res, service_details=details)


def rotation_succeeded(e: Env) -> Call:
    """Secrets Manager RotationSucceeded service event."""
    return Call(None, None, None, {"SecretId": e.pick(e.res.secrets)})


def get_secret(e: Env) -> Call:
    """Secrets Manager GetSecretValue by ARN or by name."""
    secret = e.pick(e.res.secrets)
    return Call({"secretId": secret if e.rng.random() < 0.6 else secret.rsplit(":", 1)[1][:-7]})


def update_instance_information(e: Env) -> Call:
    """SSM agent's UpdateInstanceInformation heartbeat."""
    rng = e.rng
    ip = f"10.0.{rng.randrange(1, 64)}.{rng.randrange(4, 250)}"
    req = {
        "instanceId": e.actor.name,
        "agentVersion": "3.3.131.0",
        "agentStatus": "Active",
        "platformType": "Linux",
        "platformName": "Amazon Linux",
        "platformVersion": "2023",
        "iPAddress": ip,
        "computerName": f"ip-{ip.replace('.', '-')}.{e.region}.compute.internal",
        "agentName": "amazon-ssm-agent",
        "availabilityZone": f"{e.region}a",
    }
    return Call(req)


def ssm_param(many: bool) -> Any:
    """SSM GetParameter, or GetParameters when ``many``."""

    def build(e: Env) -> Call:
        if many:
            return Call(
                {
                    "names": sorted({e.pick(e.res.parameters), e.pick(e.res.parameters)}),
                    "withDecryption": True,
                }
            )
        return Call({"name": e.pick(e.res.parameters), "withDecryption": True})

    return build


# -- Monitoring, logs, lambda, trail, detectors, data stores -----------------------------------
def get_metric_data(e: Env) -> Call:
    """CloudWatch GetMetricData for one instance CPU metric."""
    metric = {
        "namespace": "AWS/EC2",
        "metricName": "CPUUtilization",
        "dimensions": [{"name": "InstanceId", "value": e.pick(e.res.instances)}],
    }
    query = {
        "id": "m1",
        "metricStat": {"metric": metric, "period": 300, "stat": "Average"},
        "returnData": True,
    }
    return Call({"metricDataQueries": [query], "startTime": e.when(-3600), "endTime": e.when()})


def create_log_stream(e: Env) -> Call:
    """CloudWatch Logs CreateLogStream for a Lambda function's log group."""
    fn = e.actor.name
    stream = f"{e.day:%Y/%m/%d}/[$LATEST]{hex_token(e.rng, 32)}"
    return Call({"logGroupName": f"/aws/lambda/{fn}", "logStreamName": stream})


def filter_log_events(e: Env) -> Call:
    """CloudWatch Logs FilterLogEvents looking for errors."""
    fn = e.pick(e.res.functions)
    start = ((e.day.toordinal() - 719163) * 86400 + max(e.ts - 3600, 0)) * 1000
    return Call({"logGroupName": f"/aws/lambda/{fn}", "startTime": start, "filterPattern": "ERROR"})


def fn_arn(e: Env) -> str:
    """A Lambda function ARN of this account and region."""
    return f"arn:aws:lambda:{e.region}:{e.acct.id}:function:{e.pick(e.res.functions)}"


def update_function_code(e: Env) -> Call:
    """Lambda UpdateFunctionCode by CI, with its response."""
    rng = e.rng
    fn = e.pick(e.res.functions)
    arn = f"arn:aws:lambda:{e.region}:{e.acct.id}:function:{fn}"
    resp = {
        "functionName": fn,
        "functionArn": arn,
        "runtime": "python3.12",
        "role": next((a.role_arn for a in e.by_kind.get("lambda", ()) if a.name == fn), ""),
        "handler": "app.handler",
        "codeSize": rng.randrange(2_000, 9_000_000),
        "description": "",
        "timeout": 30,
        "memorySize": 256,
        "lastModified": f"{e.when()[:-1]}.{rng.randrange(1000):03d}+0000",
        "codeSha256": base64.b64encode(rng.randbytes(32)).decode(),
        "version": "$LATEST",
        "tracingConfig": {"mode": "PassThrough"},
        "revisionId": uuid4(rng),
        "state": "Active",
        "lastUpdateStatus": "InProgress",
        "lastUpdateStatusReason": "The function is being created.",
        "lastUpdateStatusReasonCode": "Creating",
        "packageType": "Zip",
        "architectures": ["arm64"],
    }
    return Call({"functionName": fn, "publish": False, "dryRun": False}, resp)


def trail_arn(e: Env) -> str:
    """The organization trail's ARN."""
    org = e.org
    return f"arn:aws:cloudtrail:{org.home_region}:{org.accounts[0].id}:trail/{org.trail_name}"


def lookup_events(e: Env) -> Call:
    """CloudTrail LookupEvents by event name."""
    name = e.pick(("ConsoleLogin", "RunInstances", "CreateUser", "DeleteBucket"))
    attrs = [{"attributeKey": "EventName", "attributeValue": name}]
    return Call({"lookupAttributes": attrs, "maxResults": 50})


def list_findings(e: Env) -> Call:
    """GuardDuty ListFindings of open, medium-or-worse findings."""
    crit = {"criterion": {"service.archived": {"eq": ["false"]}, "severity": {"gte": 4}}}
    return Call({"detectorId": e.res.detector, "findingCriteria": crit, "maxResults": 50})


def table(e: Env) -> Call:
    """DynamoDB call naming one table."""
    table = e.pick(e.res.tables)
    arn = f"arn:aws:dynamodb:{e.region}:{e.acct.id}:table/{table}"
    return Call(
        {"tableName": table}, None, [{"accountId": e.acct.id, "type": "AWS::DynamoDB::Table", "ARN": arn}]
    )


def list_instance_associations(e: Env) -> Call:
    """SSM agent's ListInstanceAssociations."""
    return Call({"instanceId": e.actor.name, "maxResults": 20})


def target_health(e: Env) -> Call:
    """ELB DescribeTargetHealth of a target group."""
    lb = e.pick(e.res.load_balancers).split("/")
    tg = f"arn:aws:elasticloadbalancing:{e.region}:{e.acct.id}:targetgroup/{lb[-2]}-tg/{lb[-1]}"
    return Call({"targetGroupArn": tg})


def sso_account(e: Env) -> Call:
    """IAM Identity Center portal call naming one account."""
    acct = e.org.accounts[int(e.rng.random() * len(e.org.accounts))].id
    return Call({"accountId": acct})


def sso_credentials(e: Env) -> Call:
    """IAM Identity Center GetRoleCredentials."""
    acct = e.org.accounts[int(e.rng.random() * len(e.org.accounts))].id
    return Call({"roleName": e.pick(("AdministratorAccess", "ReadOnlyAccess")), "accountId": acct})
