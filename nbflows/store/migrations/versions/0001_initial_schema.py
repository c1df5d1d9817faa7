"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-28 12:27:56.108164
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('work_pools',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('type', sa.String(length=50), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('base_job_template', sa.JSON(), nullable=False),
    sa.Column('concurrency_limit', sa.Integer(), nullable=True),
    sa.Column('paused', sa.Boolean(), nullable=False),
    sa.Column('created', sa.DateTime(), nullable=False),
    sa.Column('updated', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('work_queues',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('work_pool_id', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('concurrency_limit', sa.Integer(), nullable=True),
    sa.Column('paused', sa.Boolean(), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('created', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['work_pool_id'], ['work_pools.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('work_pool_id', 'name')
    )
    op.create_table('workers',
    sa.Column('work_pool_id', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('last_heartbeat', sa.DateTime(), nullable=False),
    sa.Column('heartbeat_interval', sa.Float(), nullable=False),
    sa.Column('limit', sa.Integer(), nullable=True),
    sa.Column('created', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['work_pool_id'], ['work_pools.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('work_pool_id', 'name')
    )
    op.create_table('deployments',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('flow_name', sa.String(length=200), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('entrypoint', sa.Text(), nullable=False),
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('working_dir', sa.Text(), nullable=False),
    sa.Column('work_pool_id', sa.String(length=32), nullable=False),
    sa.Column('work_queue_id', sa.String(length=32), nullable=False),
    sa.Column('parameters', sa.JSON(), nullable=False),
    sa.Column('parameter_schema', sa.JSON(), nullable=False),
    sa.Column('job_variables', sa.JSON(), nullable=False),
    sa.Column('paused', sa.Boolean(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('version_label', sa.String(length=200), nullable=True),
    sa.Column('tags', sa.JSON(), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('retries', sa.Integer(), nullable=False),
    sa.Column('retry_delay', sa.Float(), nullable=False),
    sa.Column('catchup', sa.String(length=10), nullable=False),
    sa.Column('image', sa.JSON(), nullable=True),
    sa.Column('created', sa.DateTime(), nullable=False),
    sa.Column('updated', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['work_pool_id'], ['work_pools.id'], ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['work_queue_id'], ['work_queues.id'], ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('flow_name', 'name')
    )
    op.create_table('deployment_schedules',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('deployment_id', sa.String(length=32), nullable=False),
    sa.Column('schedule', sa.JSON(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('scheduled_until', sa.DateTime(), nullable=True),
    sa.Column('created', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['deployment_id'], ['deployments.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('deployment_schedules', schema=None) as batch_op:
        batch_op.create_index('ix_schedules_until', ['active', 'scheduled_until'], unique=False)

    op.create_table('deployment_versions',
    sa.Column('deployment_id', sa.String(length=32), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('notebook', sa.Text(), nullable=False),
    sa.Column('created', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['deployment_id'], ['deployments.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('deployment_id', 'version')
    )
    op.create_table('flow_runs',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('flow_name', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('deployment_id', sa.String(length=32), nullable=True),
    sa.Column('deployment_version', sa.Integer(), nullable=True),
    sa.Column('work_pool_id', sa.String(length=32), nullable=True),
    sa.Column('work_queue_id', sa.String(length=32), nullable=True),
    sa.Column('state_type', sa.String(length=20), nullable=False),
    sa.Column('state_name', sa.String(length=30), nullable=False),
    sa.Column('state_message', sa.Text(), nullable=True),
    sa.Column('state_timestamp', sa.DateTime(), nullable=False),
    sa.Column('parameters', sa.JSON(), nullable=False),
    sa.Column('job_variables', sa.JSON(), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('max_retries', sa.Integer(), nullable=False),
    sa.Column('retry_delay', sa.Float(), nullable=False),
    sa.Column('expected_start_time', sa.DateTime(), nullable=True),
    sa.Column('start_time', sa.DateTime(), nullable=True),
    sa.Column('end_time', sa.DateTime(), nullable=True),
    sa.Column('worker_name', sa.String(length=200), nullable=True),
    sa.Column('parent_run_id', sa.String(length=32), nullable=True),
    sa.Column('idempotency_key', sa.String(length=400), nullable=True),
    sa.Column('tags', sa.JSON(), nullable=False),
    sa.Column('notebook_path', sa.Text(), nullable=True),
    sa.Column('log_count', sa.Integer(), nullable=False),
    sa.Column('logs_truncated', sa.Boolean(), nullable=False),
    sa.Column('has_notebook', sa.Boolean(), nullable=False),
    sa.Column('created', sa.DateTime(), nullable=False),
    sa.Column('updated', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['deployment_id'], ['deployments.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['work_pool_id'], ['work_pools.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['work_queue_id'], ['work_queues.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('idempotency_key')
    )
    with op.batch_alter_table('flow_runs', schema=None) as batch_op:
        batch_op.create_index('ix_runs_claim', ['work_pool_id', 'state_type', 'expected_start_time'], unique=False)
        batch_op.create_index('ix_runs_created', ['created'], unique=False)
        batch_op.create_index('ix_runs_deployment_created', ['deployment_id', 'created'], unique=False)
        batch_op.create_index('ix_runs_flow_created', ['flow_name', 'created'], unique=False)
        batch_op.create_index('ix_runs_parent', ['parent_run_id'], unique=False)
        batch_op.create_index('ix_runs_state_created', ['state_type', 'created'], unique=False)
        batch_op.create_index('ix_runs_worker_state', ['worker_name', 'state_type'], unique=False)

    op.create_table('flow_run_notebooks',
    sa.Column('flow_run_id', sa.String(length=32), nullable=False),
    sa.Column('notebook', sa.Text(), nullable=False),
    sa.Column('updated', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['flow_run_id'], ['flow_runs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('flow_run_id')
    )
    op.create_table('logs',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('flow_run_id', sa.String(length=32), nullable=False),
    sa.Column('timestamp', sa.DateTime(), nullable=False),
    sa.Column('level', sa.Integer(), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('cell_index', sa.Integer(), nullable=True),
    sa.Column('source', sa.String(length=20), nullable=False),
    sa.ForeignKeyConstraint(['flow_run_id'], ['flow_runs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('logs', schema=None) as batch_op:
        batch_op.create_index('ix_logs_run_id', ['flow_run_id', 'id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('logs', schema=None) as batch_op:
        batch_op.drop_index('ix_logs_run_id')

    op.drop_table('logs')
    op.drop_table('flow_run_notebooks')
    with op.batch_alter_table('flow_runs', schema=None) as batch_op:
        batch_op.drop_index('ix_runs_worker_state')
        batch_op.drop_index('ix_runs_state_created')
        batch_op.drop_index('ix_runs_parent')
        batch_op.drop_index('ix_runs_flow_created')
        batch_op.drop_index('ix_runs_deployment_created')
        batch_op.drop_index('ix_runs_created')
        batch_op.drop_index('ix_runs_claim')

    op.drop_table('flow_runs')
    op.drop_table('deployment_versions')
    with op.batch_alter_table('deployment_schedules', schema=None) as batch_op:
        batch_op.drop_index('ix_schedules_until')

    op.drop_table('deployment_schedules')
    op.drop_table('deployments')
    op.drop_table('workers')
    op.drop_table('work_queues')
    op.drop_table('work_pools')
