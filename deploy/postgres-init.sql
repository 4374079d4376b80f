-- One database per service (each service owns its tables and never reads another's).
CREATE DATABASE intake;
CREATE DATABASE sla;
CREATE DATABASE escalation;
CREATE DATABASE notify;
